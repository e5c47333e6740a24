//! `device_strategy`: which backend runs a batch. `"auto"` and `"cpu"` use the built-in CPU
//! backend; `"gpu"` (or any other name) needs a backend registered under that name, and fails
//! with `DeviceUnavailable` rather than silently running elsewhere when there is none.
//!
//! Run with `cargo run --example device_strategy`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use xcs::prelude::*;
use xcs::{Backend, BatchJob, DeviceStrategy};

/// Reports which thread ran the item.
#[xcs::operator]
fn where_am_i(item: u32) -> String {
    std::thread::sleep(std::time::Duration::from_millis(5));
    let thread = std::thread::current();
    format!(
        "item {item} on {}",
        thread.name().unwrap_or("an unnamed thread")
    )
}

/// A stand-in for a GPU queue: runs a batch on two "streams" (threads of its own), even items on
/// one and odd items on the other. A real backend would batch the items into a kernel launch.
#[derive(Default)]
struct FakeGpu {
    batches: AtomicUsize,
}

impl Backend for FakeGpu {
    fn run(&self, job: &BatchJob) {
        self.batches.fetch_add(1, Ordering::SeqCst);
        std::thread::scope(|scope| {
            for stream in 0..2 {
                std::thread::Builder::new()
                    .name(format!("fake-gpu-stream-{stream}"))
                    .spawn_scoped(scope, move || {
                        for index in (stream..job.len()).step_by(2) {
                            job.run_item(index);
                        }
                    })
                    .expect("a stream thread");
            }
        });
    }
}

fn main() -> Result<(), XcsError> {
    let batch = || WhereAmIInputs::batch(vec![0, 1, 2, 3]);
    println!("registered backends: {:?}", xcs::registered_backends());

    let cpu = execution_options!(device_strategy = "cpu", max_workers = 2 => {
        vmap(WhereAmI).call(batch()?)
    })?;
    println!("\ndevice_strategy = \"cpu\":");
    cpu.iter().for_each(|line| println!("  {line}"));

    // No GPU backend yet: a clear error, not a silent fallback to the CPU.
    let err =
        execution_options!(device_strategy = "gpu" => vmap(WhereAmI).call(batch()?)).unwrap_err();
    println!("\ndevice_strategy = \"gpu\" with no backend:\n  error: {err}");

    let gpu = Arc::new(FakeGpu::default());
    xcs::register_backend("gpu", gpu.clone())?;
    println!("\nregistered backends: {:?}", xcs::registered_backends());
    let on_gpu = execution_options!(device_strategy = "gpu" => vmap(WhereAmI).call(batch()?))?;
    println!("device_strategy = \"gpu\":");
    on_gpu.iter().for_each(|line| println!("  {line}"));
    println!(
        "  the backend ran {} batch(es)",
        gpu.batches.load(Ordering::SeqCst)
    );

    // Backends under any other name are chosen with `DeviceStrategy::named`.
    xcs::register_backend("tpu-pod", gpu.clone())?;
    let strategy = DeviceStrategy::named("tpu-pod");
    let named = execution_options!(device_strategy = strategy => {
        vmap(WhereAmI).call(batch()?)
    })?;
    println!(
        "\ndevice_strategy = DeviceStrategy::named(\"tpu-pod\"): {}",
        named[0]
    );
    println!(
        "  the backend has now run {} batch(es)",
        gpu.batches.load(Ordering::SeqCst)
    );

    xcs::unregister_backend("gpu");
    xcs::unregister_backend("tpu-pod");
    Ok(())
}
