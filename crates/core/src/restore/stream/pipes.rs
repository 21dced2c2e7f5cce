//! `pg_restore -Fd` over named pipes: for a parallel backup's large objects, and for its
//! tables when pgdrill cannot COPY them itself (an archive not in UTF8). Each pipe is fed
//! from its object in the order pg_restore opens them.

use super::deal::Task;
use super::lanes::Runner;
use super::objects::{Bounded, Objects};
use crate::cancel::Cancel;
use crate::manifest::StoredObject;
use crate::restore::command::{self, list_file, PgRestore};
use crate::restore::verdict::verdict;
use crate::{Error, Result};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

impl Runner<'_, '_> {
    /// The large-object entries of `task` in one `pg_restore -Fd`: the `blobs*.toc` lists
    /// decoded into its directory, each large object's file a named pipe fed in the order
    /// the lists name them.
    pub(super) async fn large_objects(
        &self,
        objs: &Arc<Objects>,
        task: &Task,
        stopped: Cancel,
    ) -> Result<Vec<String>> {
        let lists: Vec<(String, StoredObject)> = objs
            .by_file
            .iter()
            .filter(|(f, o)| o.kind == "blobs" && f.ends_with(".toc"))
            .map(|(f, o)| (f.clone(), o.clone()))
            .collect();
        let mut ordered: Vec<(String, StoredObject)> = Vec::new();
        let mut texts = Vec::new();
        for (file, o) in &lists {
            let sink = Bounded {
                buf: Vec::new(),
                cap: usize::try_from(o.raw_size).unwrap_or(usize::MAX),
            };
            let text = objs.decode(o, sink, false, stopped.clone()).await?.buf;
            texts.push((file.clone(), text));
        }
        // pg_restore reads the lists in the order of the BLOBS entries (one list before
        // PostgreSQL 17, one per entry since), each list line by line.
        let rank = |file: &str| {
            let id = file
                .strip_prefix("blobs_")
                .and_then(|f| f.strip_suffix(".toc"))
                .and_then(|f| f.parse::<i64>().ok());
            id.and_then(|id| task.entries.iter().position(|e| *e == id))
                .unwrap_or(0)
        };
        texts.sort_by_key(|(f, _)| rank(f));
        for (file, text) in &texts {
            for line in String::from_utf8_lossy(text).lines() {
                let Some(name) = line.split_whitespace().nth(1) else {
                    continue;
                };
                let o = objs.by_file.get(name).ok_or_else(|| {
                    Error::Integrity(format!(
                        "{file} names {name}, which the manifest does not list; restore from another backup"
                    ))
                })?;
                ordered.push((name.to_string(), o.clone()));
            }
        }
        self.piped(objs, &task.entries, &texts, ordered, false, stopped)
            .await
    }

    /// `pg_restore -Fd -L <entries>` over a directory of its own: `toc.dat`, the `regular`
    /// files as given, and each of `piped` a named pipe fed (in order) from its object.
    pub(super) async fn piped(
        &self,
        objs: &Arc<Objects>,
        entries: &[i64],
        regular: &[(String, Vec<u8>)],
        piped: Vec<(String, StoredObject)>,
        metered: bool,
        mut stopped: Cancel,
    ) -> Result<Vec<String>> {
        let failed =
            |e: io::Error| Error::Failed(format!("cannot prepare pg_restore's input: {e}"));
        let dir = tempfile::Builder::new()
            .prefix("pgdrill-pipes-")
            .tempdir()
            .map_err(failed)?;
        let toc = dir.path().join("toc.dat");
        std::fs::hard_link(objs.dir.path().join("toc.dat"), &toc)
            .or_else(|_| std::fs::copy(objs.dir.path().join("toc.dat"), &toc).map(|_| ()))
            .map_err(failed)?;
        for (file, bytes) in regular {
            std::fs::write(dir.path().join(file), bytes).map_err(failed)?;
        }
        for (file, _) in &piped {
            rustix::fs::mkfifoat(
                rustix::fs::CWD,
                dir.path().join(file),
                rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
            )
            .map_err(|e| failed(e.into()))?;
        }
        let list = list_file(&super::deps::id_list(entries))?;
        let run = PgRestore {
            list: Some(list.path()),
            file: Some(dir.path()),
            ..PgRestore::default()
        };
        let mut proc = command::spawn(run.command(self.job, self.install, self.passfile))?;
        let exited = Arc::new(AtomicBool::new(false));
        let feeder = {
            let (objs, exited, stopped) = (objs.clone(), exited.clone(), stopped.clone());
            let base = dir.path().to_path_buf();
            tokio::spawn(async move {
                for (file, o) in piped {
                    let pipe = Pipe {
                        path: base.join(&file),
                        file: None,
                        exited: exited.clone(),
                    };
                    objs.decode(&o, pipe, metered, stopped.clone()).await?;
                }
                Ok::<(), Error>(())
            })
        };
        let status = command::wait(&mut proc, &mut stopped).await;
        exited.store(true, Ordering::SeqCst);
        let fed = feeder
            .await
            .map_err(|e| Error::Failed(format!("the restore stage crashed: {e}")))?;
        let lines = proc.stderr_lines();
        let status = status?;
        match fed {
            Err(e @ (Error::Integrity(_) | Error::Key(_))) => Err(e),
            Err(e) => {
                verdict(Some(status), &lines, self.job.ignore_errors, false)?;
                Err(e)
            }
            Ok(()) => verdict(Some(status), &lines, self.job.ignore_errors, false),
        }
    }
}

/// The writing end of a named pipe, opened on first use, once pg_restore opened it for
/// reading (never blocking on a pg_restore that exited without reading it).
struct Pipe {
    path: PathBuf,
    file: Option<std::fs::File>,
    exited: Arc<AtomicBool>,
}

impl Pipe {
    fn open(&mut self) -> io::Result<&mut std::fs::File> {
        if self.file.is_none() {
            self.file = Some(open_pipe(&self.path, &self.exited)?);
        }
        self.file
            .as_mut()
            .ok_or_else(|| io::Error::other("the pipe is not open"))
    }
}

/// Opens the named pipe at `path` for writing once a reader has it open, polling (a
/// non-blocking open fails with ENXIO until then); gives up when `exited` is set.
pub(super) fn open_pipe(path: &Path, exited: &AtomicBool) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    loop {
        let opened = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
            .open(path);
        match opened {
            Ok(f) => {
                let flags = rustix::fs::fcntl_getfl(&f)?;
                rustix::fs::fcntl_setfl(&f, flags - rustix::fs::OFlags::NONBLOCK)?;
                return Ok(f);
            }
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NXIO.raw_os_error()) => {
                if exited.load(Ordering::SeqCst) {
                    return Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        "pg_restore ended without reading its input",
                    ));
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(e) => return Err(e),
        }
    }
}

impl Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.open()?.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        // Opened even when nothing was written: an empty file still ends for its reader.
        self.open()?.flush()
    }
}
