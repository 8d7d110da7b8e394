//! Known engine issue, smallest case: on deno_core's QuickJS backend a near-heap-limit callback
//! makes the engine measure its whole heap at every interrupt check, slowing all JavaScript.
//! `cargo run --release -p queuexec-js --example heap_callback_cost` prints both timings.

use std::time::Instant;

use deno_core::{JsRuntime, RuntimeOptions, v8};

fn time_loop(with_callback: bool) -> f64 {
    let mut runtime = JsRuntime::new(RuntimeOptions {
        create_params: Some(v8::CreateParams::default().heap_limits(0, 256 << 20)),
        ..Default::default()
    });
    if with_callback {
        runtime.add_near_heap_limit_callback(|current, _initial| current * 2);
    }
    // Some live heap, as a loaded task has.
    let setup = "globalThis.keep = Array.from({ length: 20000 }, (_, i) => ({ i, s: 'x' + i }));";
    if let Err(e) = runtime.execute_script("setup", setup) {
        eprintln!("setup failed: {e}");
    }
    let started = Instant::now();
    if let Err(e) =
        runtime.execute_script("loop", "let s = 0; for (let i = 0; i < 5e6; i++) s += i; s")
    {
        eprintln!("loop failed: {e}");
    }
    started.elapsed().as_secs_f64() * 1e3
}

fn main() {
    let without = time_loop(false);
    let with = time_loop(true);
    println!(
        "5e6-iteration loop: {without:.1} ms without a near-heap-limit callback, {with:.1} ms with one ({:.1}x)",
        with / without
    );
}
