//! How many threads a process's async runtime gets: `QUEUEXEC_THREADS`, one by default.
//!
//! The engines are a handful of tasks handing each job along (sessions, the scheduler, result
//! delivery). On several threads each hand-off can wake another thread: tokio puts the task a
//! socket woke on the local queue and wakes an idle thread to steal it, and a cross-thread
//! wake-up costs 50–100 µs on a small virtual machine, more than the work it hands over. One
//! thread runs the whole path with no wake-up but the socket's. Measured on this project's
//! 2-core machine with `queuexec bench --workers 1 --jobs 2000 --samples 2000`: push → result
//! p50 with the memory store 263 µs on two threads, 133–169 µs on one; the 100,000-job
//! throughput with 2 worker processes 52,000–55,000 jobs/s on two threads, 62,000–65,000 on
//! one. Jobs themselves never run on it (task.js runs on threads of its own, commands in
//! processes of their own), so a busy job does not hold up the network.
//!
//! A master serving many workers on a machine with many cores can give the network more
//! threads, up to [`MAX_THREADS`]: its libp2p encryption and framing spread over them.

/// The variable that sets the runtime's threads.
pub const THREADS_VAR: &str = "QUEUEXEC_THREADS";

/// The most threads [`THREADS_VAR`] may ask for.
pub const MAX_THREADS: usize = 256;

/// The runtime's worker threads: [`THREADS_VAR`] when it is set, else 1. A value that is not a
/// whole number from 1 to [`MAX_THREADS`] is an error that names the variable and the value.
pub fn runtime_threads() -> crate::Result<usize> {
    parse_threads(std::env::var_os(THREADS_VAR).as_deref())
}

fn parse_threads(value: Option<&std::ffi::OsStr>) -> crate::Result<usize> {
    let Some(value) = value else {
        return Ok(1);
    };
    let text = value.to_string_lossy();
    match text.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_THREADS).contains(&n) => Ok(n),
        _ => Err(crate::Error::config(format!(
            "{THREADS_VAR}={text:?} is not a thread count: set it to a whole number from 1 to \
             {MAX_THREADS} (threads for the network; 1, the default, suits most machines), or \
             unset it"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn one_thread_unless_told_otherwise() {
        assert_eq!(parse_threads(None).expect("unset"), 1);
        assert_eq!(parse_threads(Some(OsStr::new("4"))).expect("4"), 4);
        assert_eq!(parse_threads(Some(OsStr::new(" 2 "))).expect("spaces"), 2);
        assert_eq!(parse_threads(Some(OsStr::new("256"))).expect("max"), 256);
    }

    #[test]
    fn a_bad_thread_count_names_the_variable_and_the_value() {
        for bad in ["0", "-1", "two", "", "257", "1.5"] {
            let err = parse_threads(Some(OsStr::new(bad)))
                .expect_err(bad)
                .to_string();
            assert!(err.contains("QUEUEXEC_THREADS"), "{err}");
            assert!(err.contains(&format!("{bad:?}")), "{err}");
            assert!(err.contains("1 to 256"), "{err}");
        }
    }
}
