//! A spinner on stderr for calls that can take more than a moment (apply,
//! delete, reload, health checks, connecting). Drawn only when stderr is a
//! terminal, after a short delay so that quick calls show nothing, and
//! erased before the result is printed: stdout never sees it, and
//! neither does stderr when it is a pipe or a file.

use std::io::{IsTerminal, Write};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a call runs before the spinner shows.
const DELAY: Duration = Duration::from_millis(250);
/// Time between frames.
const FRAME: Duration = Duration::from_millis(100);
const FRAMES: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/// A running spinner; [`Spinner::finish`] (or dropping it) erases it.
#[derive(Debug)]
pub struct Spinner {
    running: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
}

impl Spinner {
    /// Starts a spinner showing `message` if stderr is a terminal and
    /// `PRISM_NO_PROGRESS` is not set; otherwise does nothing.
    pub fn start(message: impl Into<String>) -> Self {
        let enabled = std::io::stderr().is_terminal()
            && std::env::var_os("PRISM_NO_PROGRESS").is_none_or(|v| v.is_empty());
        if !enabled {
            return Self { running: None };
        }
        let message = message.into();
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || spin(&message, &stopped));
        Self {
            running: Some((stop, thread)),
        }
    }

    /// Whether the spinner draws (stderr is a terminal).
    #[cfg(test)]
    pub fn is_drawing(&self) -> bool {
        self.running.is_some()
    }

    /// Erases the spinner; returns once the line is clear.
    pub fn finish(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some((stop, thread)) = self.running.take() {
            let _ = stop.send(());
            let _ = thread.join();
        }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Draws frames until told to stop (or the sender is gone), then clears
/// the line if anything was drawn.
fn spin(message: &str, stopped: &mpsc::Receiver<()>) {
    match stopped.recv_timeout(DELAY) {
        Err(RecvTimeoutError::Timeout) => {}
        _ => return,
    }
    let mut stderr = std::io::stderr();
    for frame in FRAMES.iter().cycle() {
        let _ = write!(stderr, "\r\x1b[2K{frame} {message}");
        let _ = stderr.flush();
        if !matches!(stopped.recv_timeout(FRAME), Err(RecvTimeoutError::Timeout)) {
            break;
        }
    }
    let _ = write!(stderr, "\r\x1b[2K");
    let _ = stderr.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_draws_when_stderr_is_not_a_terminal() {
        // `cargo test` captures stderr through a pipe or file unless run
        // on a terminal with --nocapture; the spinner must then be off.
        let spinner = Spinner::start("working");
        assert_eq!(spinner.is_drawing(), std::io::stderr().is_terminal());
        spinner.finish();
    }

    #[test]
    fn a_stopped_spinner_thread_ends() {
        let (stop, stopped) = mpsc::channel();
        let thread = std::thread::spawn(move || spin("x", &stopped));
        stop.send(()).unwrap();
        thread.join().unwrap();
    }
}
