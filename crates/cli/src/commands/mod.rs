pub mod backup;
pub mod catalog;
pub mod demo;
pub mod diff;
pub mod doctor;
pub mod drill;
pub mod init;
pub mod mirror;
pub mod operate;
pub mod restore;
pub mod serve;

/// What a command produced: a JSON document for --json, and text for people.
pub struct Output {
    pub json: serde_json::Value,
    pub human: String,
    /// Non-zero when the command ran but its verdict is a failure (e.g. one of several
    /// backups failed); errors that stop a command are returned as `Err` instead.
    pub exit_code: u8,
}

impl Output {
    pub fn ok(json: serde_json::Value, human: String) -> Self {
        Output {
            json,
            human,
            exit_code: 0,
        }
    }
}
