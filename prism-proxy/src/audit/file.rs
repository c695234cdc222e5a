//! The `file` sink: JSON lines appended to one active file, rotated by
//! size, fsynced in batches. Blocking I/O; the writer runs it on the
//! blocking pool.
//!
//! Durability: a batch is handed to the kernel with one `write(2)` before
//! any call whose record is in it returns, so a killed proxy (kill -9)
//! loses no acknowledged record. A machine crash or power loss can lose
//! what was written since the last fsync: at most `fsync_interval` worth
//! of records (none with `fsync_interval_ms: 0`).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::config::FileSinkConfig;

/// The open active file and its rotation state.
#[derive(Debug)]
pub struct FileSink {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
    fsync_interval: Duration,
    file: Option<File>,
    size: u64,
    /// When the oldest record not yet fsynced was written.
    unsynced_since: Option<Instant>,
    /// A write failed part way: start the next one on a fresh line.
    broken_line: bool,
}

/// A file sink failure, naming the file (never a record).
#[derive(Debug, thiserror::Error)]
#[error("audit file {}: {what}: {source}", .path.display())]
pub struct FileError {
    path: PathBuf,
    what: &'static str,
    source: io::Error,
}

impl FileSink {
    /// Opens (creating directories and the file as needed) the active file
    /// for appending. A last line cut short by a crash is closed with a
    /// newline so that the next record starts on its own line.
    pub fn open(config: &FileSinkConfig, data_dir: &Path) -> Result<Self, FileError> {
        let mut sink = FileSink {
            path: config.path(data_dir),
            max_bytes: config.max_bytes,
            keep: config.keep,
            fsync_interval: config.fsync_interval,
            file: None,
            size: 0,
            unsynced_since: None,
            broken_line: false,
        };
        sink.reopen()?;
        Ok(sink)
    }

    /// The active file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, what: &'static str) -> impl FnOnce(io::Error) -> FileError + '_ {
        move |source| FileError {
            path: self.path.clone(),
            what,
            source,
        }
    }

    fn reopen(&mut self) -> Result<(), FileError> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(self.err("creating its directory"))?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&self.path)
            .map_err(self.err("opening"))?;
        let size = file.metadata().map_err(self.err("reading its size"))?.len();
        if size > 0 {
            let mut last = [0u8; 1];
            file.seek(SeekFrom::Start(size - 1))
                .and_then(|_| file.read_exact(&mut last))
                .map_err(self.err("reading its last byte"))?;
            self.broken_line = last[0] != b'\n';
        }
        self.file = Some(file);
        self.size = size;
        Ok(())
    }

    /// Appends `lines` (whole JSON lines) with one write, rotating first if
    /// they would take the file over `max_bytes`. With a zero
    /// `fsync_interval` the data is fsynced before this returns.
    pub fn write(&mut self, lines: &[u8]) -> Result<(), FileError> {
        if self.file.is_none() {
            self.reopen()?;
        }
        if self.size > 0 && self.size + lines.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        let mut buf = Vec::new();
        let data = if self.broken_line {
            buf.reserve(lines.len() + 1);
            buf.push(b'\n');
            buf.extend_from_slice(lines);
            &buf[..]
        } else {
            lines
        };
        let file = self.file.as_mut().expect("opened above");
        if let Err(e) = file.write_all(data) {
            // Part of the data may be in the file: end it with a newline
            // next time, and re-read the size.
            self.broken_line = true;
            self.file = None;
            return Err(self.err("writing")(e));
        }
        self.broken_line = false;
        self.size += data.len() as u64;
        self.unsynced_since.get_or_insert_with(Instant::now);
        if self.fsync_interval.is_zero() {
            self.sync()?;
        }
        Ok(())
    }

    /// When the data written so far must be fsynced at the latest.
    pub fn sync_deadline(&self) -> Option<Instant> {
        self.unsynced_since.map(|t| t + self.fsync_interval)
    }

    /// Fsyncs the active file if anything is unsynced.
    pub fn sync(&mut self) -> Result<(), FileError> {
        if self.unsynced_since.is_none() {
            return Ok(());
        }
        if let Some(file) = &self.file {
            file.sync_data().map_err(self.err("fsync"))?;
        }
        self.unsynced_since = None;
        Ok(())
    }

    /// Fsyncs if the oldest unsynced record is due.
    pub fn sync_if_due(&mut self, now: Instant) -> Result<(), FileError> {
        match self.sync_deadline() {
            Some(deadline) if deadline <= now => self.sync(),
            _ => Ok(()),
        }
    }

    fn rotated(&self, n: u32) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    /// `audit.jsonl` → `.1`, `.1` → `.2`, …; the file beyond `keep` is
    /// deleted. The old file is fsynced first and the directory after, so
    /// a crash never loses a rotated file's records.
    fn rotate(&mut self) -> Result<(), FileError> {
        self.sync()?;
        self.file = None;
        let oldest = self.rotated(self.keep);
        match std::fs::remove_file(&oldest) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(self.err("deleting the oldest rotated file")(e)),
        }
        for n in (1..self.keep).rev() {
            let from = self.rotated(n);
            if from.exists() {
                std::fs::rename(&from, self.rotated(n + 1))
                    .map_err(self.err("renaming a rotated file"))?;
            }
        }
        std::fs::rename(&self.path, self.rotated(1)).map_err(self.err("rotating"))?;
        self.reopen()?;
        if let Some(dir) = self.path.parent() {
            // Make the renames durable.
            #[cfg(unix)]
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(self.err("fsync of its directory"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path, max_bytes: u64, keep: u32) -> FileSinkConfig {
        FileSinkConfig {
            path: Some(dir.join("a").join("audit.jsonl")),
            max_bytes,
            keep,
            fsync_interval: Duration::from_secs(1),
        }
    }

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn rotates_by_size_and_keeps_the_newest_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = FileSink::open(&config(dir.path(), 100, 2), dir.path()).unwrap();
        // Each line is 40 bytes: two fit in 100, the third rotates.
        for i in 0..7 {
            let line = format!("{{\"n\":{i:02},\"pad\":\"{}\"}}\n", "x".repeat(22));
            assert_eq!(line.len(), 40);
            sink.write(line.as_bytes()).unwrap();
        }
        let base = sink.path().to_path_buf();
        let n = |l: &str| l[5..7].parse::<u32>().unwrap();
        let active: Vec<u32> = lines(&base).iter().map(|l| n(l)).collect();
        let one: Vec<u32> = lines(&sink.rotated(1)).iter().map(|l| n(l)).collect();
        let two: Vec<u32> = lines(&sink.rotated(2)).iter().map(|l| n(l)).collect();
        assert_eq!(active, [6]);
        assert_eq!(one, [4, 5]);
        assert_eq!(two, [2, 3]);
        assert!(!sink.rotated(3).exists(), "only `keep` rotated files stay");
    }

    #[test]
    fn a_cut_last_line_is_closed_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), 1 << 20, 3);
        let path = cfg.path(dir.path());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "{\"whole\":1}\n{\"cut").unwrap();
        let mut sink = FileSink::open(&cfg, dir.path()).unwrap();
        sink.write(b"{\"next\":2}\n").unwrap();
        assert_eq!(lines(&path), ["{\"whole\":1}", "{\"cut", "{\"next\":2}"]);
    }

    #[test]
    fn sync_is_due_after_the_interval() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = FileSink::open(&config(dir.path(), 1 << 20, 1), dir.path()).unwrap();
        assert_eq!(sink.sync_deadline(), None);
        let before = Instant::now();
        sink.write(b"{}\n").unwrap();
        let deadline = sink.sync_deadline().expect("unsynced data has a deadline");
        assert!(deadline >= before + Duration::from_secs(1));
        sink.sync_if_due(before).unwrap();
        assert!(sink.sync_deadline().is_some(), "not due yet");
        sink.sync_if_due(deadline).unwrap();
        assert_eq!(sink.sync_deadline(), None);
    }

    #[test]
    fn zero_interval_syncs_every_write() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path(), 1 << 20, 1);
        cfg.fsync_interval = Duration::ZERO;
        let mut sink = FileSink::open(&cfg, dir.path()).unwrap();
        sink.write(b"{}\n").unwrap();
        assert_eq!(sink.sync_deadline(), None);
    }
}
