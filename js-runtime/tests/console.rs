//! console.* reaches the worker's log (tracing), at the matching level. One test in this binary:
//! it installs the process-wide subscriber the runtime threads log to.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::{loaded, ok, small_config};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn console_output_goes_to_the_worker_log_with_levels() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("subscriber");

    let task = r#"
module.exports = class {
  run() {
    console.log("log %s=%d", "answer", 42, { nested: { list: [1, 2] } });
    console.info("info line");
    console.warn("warn line");
    console.error("error line", new Error("shown with its stack"));
    console.debug("debug line");
    console.dir({ dir: true });
    return null;
  }
};
"#;
    let (executor, _dir) = loaded(&[("task.js", task)], small_config(1)).await;
    ok(&executor, "1", "null").await;
    let log = String::from_utf8(captured.0.lock().expect("lock").clone()).expect("utf8");
    let line = |needle: &str| {
        log.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in:\n{log}"))
            .to_string()
    };
    assert!(line("log answer=42").contains("INFO"), "{log}");
    assert!(
        line("log answer=42").contains("{ nested: { list: [ 1, 2 ] } }"),
        "{log}"
    );
    assert!(line("info line").contains("INFO"), "{log}");
    assert!(line("warn line").contains("WARN"), "{log}");
    assert!(line("error line").contains("ERROR"), "{log}");
    assert!(log.contains("Error: shown with its stack"), "{log}");
    assert!(line("debug line").contains("DEBUG"), "{log}");
    assert!(line("{ dir: true }").contains("INFO"), "{log}");
    assert!(
        line("info line").contains("queuexec::task"),
        "task output is tagged: {log}"
    );
}
