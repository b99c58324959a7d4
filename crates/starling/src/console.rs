//! Results printed to stdout. A reader that goes away (`starling tune … | head`) is not an error:
//! the job finishes and writes its files, and what it would have printed is dropped, instead of
//! `println!` panicking on the closed pipe.

use std::fmt;
use std::io::{ErrorKind, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Set once stdout's reader has gone; nothing more is written to it.
static CLOSED: AtomicBool = AtomicBool::new(false);

/// The first failure to write stdout other than a closed pipe (a full disk under `> file`).
static FAILED: Mutex<Option<String>> = Mutex::new(None);

/// Writes `args` to stdout and flushes; a closed pipe silences stdout from then on, and so does
/// any other failure, which [`stdout_error`] then reports.
pub fn print(args: fmt::Arguments<'_>) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        CLOSED.store(true, Ordering::Relaxed);
        if e.kind() != ErrorKind::BrokenPipe {
            FAILED.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_with(|| e.to_string());
        }
    }
}

/// Why writing stdout failed, when it did for a reason other than its reader leaving: the
/// command's output is incomplete, which is an error.
pub fn stdout_error() -> Option<String> {
    FAILED.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Writes `args` to stderr, ignoring failure: logs must not end a job whose stderr went away.
pub fn eprint(args: fmt::Arguments<'_>) {
    let _ = std::io::stderr().lock().write_fmt(args);
}

/// `eprintln!` that survives a closed stderr (see [`eprint`]).
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => { $crate::console::eprint(format_args!("{}\n", format_args!($($arg)*))) };
}

/// `println!` that survives a closed stdout (see [`print`]).
#[macro_export]
macro_rules! outln {
    () => { $crate::console::print(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::console::print(format_args!("{}\n", format_args!($($arg)*))) };
}

/// `print!` that survives a closed stdout (see [`print`]).
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::console::print(format_args!($($arg)*)) };
}

/// An error and its chain of causes on one line, each cause once: a cause whose text its parent
/// already quotes is skipped. The one printer of errors for users (the CLI, the Python package).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !msg.contains(&text) {
            msg = format!("{msg}: {text}");
        }
        cause = c.source();
    }
    msg
}
