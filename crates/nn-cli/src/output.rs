//! Standard output and error messages.
//!
//! Results go to standard output through [`say!`]: a write that fails returns an error
//! instead of panicking as `println!` does, and [`exit_with`] ends the program quietly when
//! the reader has gone away (`nn predict … | head -1`), as other Unix tools do. Every other
//! failure is one `error:` line on standard error with exit code 1, each cause printed once.

use std::io::Write;

/// Writes one line to standard output; `?` passes a failed write on.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::output::line(format_args!($($arg)*))?
    };
}
pub(crate) use say;

/// Writes `args` and a newline to standard output.
///
/// # Errors
/// The write's error (a closed pipe, a full disk).
pub fn line(args: std::fmt::Arguments<'_>) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_fmt(args)?;
    out.write_all(b"\n")
}

/// Ends the program for the outcome of a command: 0 on success or when standard output
/// was closed by its reader; otherwise one `error:` line and 1.
pub fn exit_with(result: anyhow::Result<()>) -> ! {
    let code = match result {
        Ok(()) => 0,
        Err(e) if is_broken_pipe(&e) => 0,
        Err(e) => {
            eprintln!("error: {}", message(&e));
            1
        }
    };
    let _ = std::io::stdout().flush();
    std::process::exit(code)
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The error and its causes on one line, each cause once: a cause whose text the message
/// already holds (an error that prints its source as part of its own text) is skipped.
pub fn message(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let c = cause.to_string();
        if text.contains(&c) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&c);
    }
    let line = text.replace('\n', " ");
    // a safety net for messages that quote their input at length
    if line.chars().count() > MAX_MESSAGE {
        let cut: String = line.chars().take(MAX_MESSAGE).collect();
        return format!("{cut}… (message cut)");
    }
    line
}

/// The longest error line printed, in characters.
const MAX_MESSAGE: usize = 1000;

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn each_cause_is_printed_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory");
        // an error whose text already contains its source's text
        #[derive(Debug)]
        struct Wrapped {
            source: std::io::Error,
        }
        impl std::fmt::Display for Wrapped {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "m.csv: {}", self.source)
            }
        }
        impl std::error::Error for Wrapped {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.source)
            }
        }
        let e = anyhow::Error::new(Wrapped { source: io });
        assert_eq!(message(&e), "m.csv: No such file or directory");
        let e = Err::<(), _>(anyhow::anyhow!("inner problem"))
            .context("outer step")
            .unwrap_err();
        assert_eq!(message(&e), "outer step: inner problem");
    }
}
