//! The async API on two executors, tokio and pollster: the futures are
//! woken by the bridge's callbacks, with no runtime of vmz's own. Every
//! await is bounded: `bounded` fails the test with what it waited for.

// These tests boot test guests under QEMU (scripts/make-guest.sh): Linux
// only. On macOS `cargo test` runs the unit and doc tests.
#![cfg(target_os = "linux")]

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use common::{Console, Resources, BOOT_TIMEOUT, MARKER};
use vmz::{EventStream, Exit, Machine, State};

/// `future`, failing the test if it does not resolve within `limit`
/// (executor-agnostic: a timer thread wakes the task at the deadline).
async fn bounded<F: Future>(future: F, limit: Duration, what: &str) -> F::Output {
    struct Bounded<F> {
        future: Pin<Box<F>>,
        expired: Arc<AtomicBool>,
        waker: Arc<Mutex<Option<Waker>>>,
        timer: Option<Duration>,
    }
    impl<F: Future> Future for Bounded<F> {
        type Output = Option<F::Output>;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            *self.waker.lock().unwrap() = Some(cx.waker().clone());
            if let Some(limit) = self.timer.take() {
                let (expired, waker) = (self.expired.clone(), self.waker.clone());
                std::thread::spawn(move || {
                    std::thread::sleep(limit);
                    expired.store(true, Ordering::SeqCst);
                    if let Some(w) = waker.lock().unwrap().take() {
                        w.wake();
                    }
                });
            }
            if let Poll::Ready(v) = self.future.as_mut().poll(cx) {
                return Poll::Ready(Some(v));
            }
            if self.expired.load(Ordering::SeqCst) {
                return Poll::Ready(None);
            }
            Poll::Pending
        }
    }
    let b = Bounded {
        future: Box::pin(future),
        expired: Arc::default(),
        waker: Arc::default(),
        timer: Some(limit),
    };
    b.await
        .unwrap_or_else(|| panic!("{what}: not done within {limit:?}"))
}

/// Every event of the stream to its end (`None` after `Ended`), by name.
async fn all_events(events: &mut EventStream) -> Vec<String> {
    let mut names = Vec::new();
    while let Some(e) = bounded(
        events.recv(),
        BOOT_TIMEOUT,
        &format!("the next event after {names:?}"),
    )
    .await
    {
        names.push(common::event_name(&e));
    }
    names
}

/// tokio: start, the console through tokio's own pipes, a graceful stop the
/// guest complies with, the event stream to its end.
#[tokio::test(flavor = "current_thread")]
#[allow(clippy::await_holding_lock)] // the VM-test lock, held for the whole test on purpose
async fn the_async_api_on_tokio_with_an_async_console() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let _s = common::serial();
    let g = common::guest();
    let before = Resources::now();
    {
        let (guest_in, to_guest) = std::io::pipe().unwrap();
        let (from_guest, guest_out) = std::io::pipe().unwrap();
        let config = common::guest_builder(&g.kernel)
            .serial_input(guest_in)
            .serial_output(guest_out)
            .build()
            .unwrap();
        let (vm, mut events) = Machine::with_event_stream(&config).unwrap();
        drop(config);
        let mut to_guest =
            tokio::net::unix::pipe::Sender::from_owned_fd(std::os::fd::OwnedFd::from(to_guest))
                .unwrap();
        let mut from_guest =
            tokio::net::unix::pipe::Receiver::from_owned_fd(std::os::fd::OwnedFd::from(from_guest))
                .unwrap();

        bounded(vm.start_async(), BOOT_TIMEOUT, "start_async")
            .await
            .unwrap();
        assert_eq!(vm.state(), State::Running);
        let mut seen = String::new();
        let mut read_until = async |needle: &str, seen: &mut String| {
            let mut buf = [0u8; 4096];
            while !seen.contains(needle) {
                let n = bounded(from_guest.read(&mut buf), BOOT_TIMEOUT, needle)
                    .await
                    .unwrap();
                assert!(n > 0, "the console ended before {needle:?}: {seen}");
                seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        };
        read_until(MARKER, &mut seen).await;
        to_guest.write_all(b"hello async\n").await.unwrap();
        read_until("echo: hello async", &mut seen).await;

        let ended = vm.ended();
        let exit = bounded(
            vm.stop_async(Duration::from_secs(30)),
            BOOT_TIMEOUT,
            "stop_async",
        )
        .await
        .unwrap();
        assert!(matches!(exit, Exit::PoweredOff), "{exit:?}");
        assert!(matches!(
            bounded(ended, BOOT_TIMEOUT, "ended").await,
            Ok(Exit::PoweredOff)
        ));
        assert_eq!(
            all_events(&mut events).await,
            [
                "State(Starting)",
                "State(Running)",
                "State(Stopped)",
                "Ended(PoweredOff)"
            ]
        );
        drop(vm);
        // The guest's output end is QEMU's only: end-of-file now.
        let mut rest = Vec::new();
        bounded(
            from_guest.read_to_end(&mut rest),
            BOOT_TIMEOUT,
            "console EOF",
        )
        .await
        .unwrap();
    }
    before.assert_restored();
}

/// pollster (a minimal executor, nothing like tokio): pause and resume as
/// futures, and a stop whose grace period runs out on a guest that ignores
/// the power button.
#[test]
fn the_async_api_on_pollster_pause_resume_and_a_forced_stop() {
    let _s = common::serial();
    common::guest();
    let before = Resources::now();
    {
        let (mut console, input, output) = Console::new();
        let (vm, mut events) =
            Machine::with_event_stream(&common::guest_config(input, output)).unwrap();
        pollster::block_on(async {
            bounded(vm.start_async(), BOOT_TIMEOUT, "start_async")
                .await
                .unwrap();
            console.expect(MARKER, BOOT_TIMEOUT);
            console.send_line("ignore-powerbutton");
            console.expect("vmz-guest: ignoring power button", BOOT_TIMEOUT);

            bounded(vm.pause_async(), BOOT_TIMEOUT, "pause_async")
                .await
                .unwrap();
            assert_eq!(vm.state(), State::Paused);
            bounded(vm.resume_async(), BOOT_TIMEOUT, "resume_async")
                .await
                .unwrap();
            assert_eq!(vm.state(), State::Running);

            let t = Instant::now();
            let exit = bounded(
                vm.stop_async(Duration::from_secs(2)),
                BOOT_TIMEOUT,
                "stop_async",
            )
            .await
            .unwrap();
            assert!(matches!(exit, Exit::ForceStopped), "{exit:?}");
            assert!(
                t.elapsed() >= Duration::from_secs(2),
                "the grace period was waited"
            );
            assert_eq!(
                all_events(&mut events).await,
                [
                    "State(Starting)",
                    "State(Running)",
                    "State(Pausing)",
                    "State(Paused)",
                    "State(Resuming)",
                    "State(Running)",
                    "State(Stopping)",
                    "State(Stopped)",
                    "Ended(ForceStopped)"
                ]
            );
            // A stream that ended stays ended.
            assert!(events.recv().await.is_none());
            assert!(events.try_recv().is_none());
        });
        drop(vm);
        console.close();
    }
    before.assert_restored();
}
