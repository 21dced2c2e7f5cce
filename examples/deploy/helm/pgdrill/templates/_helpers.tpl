{{/* The name of every object: the release name, with "-pgdrill" unless it already says so. */}}
{{- define "pgdrill.fullname" -}}
{{- if contains "pgdrill" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-pgdrill" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "pgdrill.selectorLabels" -}}
app.kubernetes.io/name: pgdrill
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "pgdrill.labels" -}}
{{ include "pgdrill.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "pgdrill.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "pgdrill.configMapName" -}}
{{ .Values.existingConfigMap | default (include "pgdrill.fullname" .) }}
{{- end -}}

{{- define "pgdrill.identitySecret" -}}
{{- if .Values.identity.existingSecret -}}
{{ .Values.identity.existingSecret }}
{{- else if .Values.identity.key -}}
{{ include "pgdrill.fullname" . }}-identity
{{- end -}}
{{- end -}}
