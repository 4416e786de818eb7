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

/// The error code of a vsock connect (as a future) that must fail.
async fn connect_error(vm: &Machine, port: u32, what: &str) -> vmz::ErrorCode {
    let e = bounded(vm.vsock_connect_async(port), BOOT_TIMEOUT, what)
        .await
        .expect_err(what);
    eprintln!("{what}: {e}");
    e.code()
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
            .vsock(true)
            .serial_input(guest_in)
            .serial_output(guest_out)
            .build()
            .unwrap();
        let (vm, mut events) = Machine::with_event_stream(&config).unwrap();
        drop(config);
        let listener = vm.vsock_listen(6000).unwrap();
        assert_eq!(
            connect_error(&vm, 5000, "connect before the start").await,
            vmz::ErrorCode::InvalidState
        );
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

        // vsock on tokio: connect, a round trip through tokio's own socket.
        to_guest
            .write_all(b"vsock-listen 5000 echo\n")
            .await
            .unwrap();
        read_until("vmz-guest: vsock listening on 5000", &mut seen).await;
        // The future borrows nothing: it runs as a task of its own.
        let task = tokio::spawn(vm.vsock_connect_async(5000));
        let stream = bounded(task, BOOT_TIMEOUT, "vsock connect")
            .await
            .unwrap()
            .expect("connect to the guest");
        assert_eq!(stream.port(), 5000);
        stream.set_nonblocking(true).unwrap();
        let fd = std::os::fd::OwnedFd::from(stream);
        let mut stream =
            tokio::net::UnixStream::from_std(std::os::unix::net::UnixStream::from(fd)).unwrap();
        let payload: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
        let (mut r, mut w) = stream.split();
        let mut back = vec![0u8; payload.len()];
        let (wrote, read) = bounded(
            async { tokio::join!(w.write_all(&payload), r.read_exact(&mut back)) },
            BOOT_TIMEOUT,
            "the vsock echo",
        )
        .await;
        wrote.unwrap();
        read.unwrap();
        assert!(back == payload, "echoed bytes differ");
        drop(stream);

        // Nobody listens on 5001: the typed error, as a future.
        assert_eq!(
            connect_error(&vm, 5001, "refused").await,
            vmz::ErrorCode::ConnectionRefused
        );

        // Cancelled: connects polled once, then dropped before their
        // answer. The connections the bridge makes anyway are closed when
        // the answers come (the Resources check at the end sees a leak).
        // (An answer may beat the first poll on a busy machine: then the
        // stream is dropped; most are still pending.)
        let mut pending = 0;
        for _ in 0..4 {
            let mut f = std::pin::pin!(vm.vsock_connect_async(5000));
            let mut cx = Context::from_waker(Waker::noop());
            pending += usize::from(f.as_mut().poll(&mut cx).is_pending());
        }
        assert!(
            pending > 0,
            "every connect was answered before its first poll"
        );

        // The guest connects to the host: accepted as a future.
        to_guest
            .write_all(b"vsock-connect 6000 hi-async\n")
            .await
            .unwrap();
        let conn = bounded(listener.accept_async(), BOOT_TIMEOUT, "accept_async")
            .await
            .expect("the guest connects");
        assert_eq!(conn.port(), 6000);
        conn.set_nonblocking(true).unwrap();
        let mut conn = tokio::net::UnixStream::from_std(std::os::unix::net::UnixStream::from(
            std::os::fd::OwnedFd::from(conn),
        ))
        .unwrap();
        let mut line = [0u8; 9];
        bounded(conn.read_exact(&mut line), BOOT_TIMEOUT, "the guest's line")
            .await
            .unwrap();
        assert_eq!(&line, b"hi-async\n");
        conn.write_all(b"hello async guest").await.unwrap();
        drop(conn);
        read_until("vmz-guest: vsock reply [hello async guest]", &mut seen).await;
        // An accept that is dropped loses nothing.
        drop(listener.accept_async());

        let ended = vm.ended();
        // An accept waiting when the VM ends is woken by the end (by its
        // own waker, nobody else polls it) and fails with a typed error.
        struct Flag(AtomicBool);
        impl std::task::Wake for Flag {
            fn wake(self: Arc<Self>) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        let mut accept = std::pin::pin!(listener.accept_async());
        assert!(accept.as_mut().poll(&mut cx).is_pending());
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
        let t = Instant::now();
        while !flag.0.load(Ordering::SeqCst) && t.elapsed() < BOOT_TIMEOUT {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            flag.0.load(Ordering::SeqCst),
            "the waiting accept was not woken by the VM's end"
        );
        match accept.as_mut().poll(&mut cx) {
            Poll::Ready(Err(e)) => assert_eq!(e.code(), vmz::ErrorCode::InvalidState, "{e}"),
            other => panic!("accept through the end: {other:?}"),
        }
        assert_eq!(
            connect_error(&vm, 5000, "connect after the end").await,
            vmz::ErrorCode::InvalidState
        );
        drop(listener);
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
        let config = common::guest_builder(&common::guest().kernel)
            .vsock(true)
            .serial_input(input)
            .serial_output(output)
            .build()
            .unwrap();
        let (vm, mut events) = Machine::with_event_stream(&config).unwrap();
        drop(config);
        pollster::block_on(async {
            bounded(vm.start_async(), BOOT_TIMEOUT, "start_async")
                .await
                .unwrap();
            console.expect(MARKER, BOOT_TIMEOUT);
            console.send_line("ignore-powerbutton");
            console.expect("vmz-guest: ignoring power button", BOOT_TIMEOUT);

            // vsock connect and accept as futures on pollster.
            console.send_line("vsock-listen 5000 echo");
            console.expect("vmz-guest: vsock listening on 5000", BOOT_TIMEOUT);
            let mut s = bounded(vm.vsock_connect_async(5000), BOOT_TIMEOUT, "vsock connect")
                .await
                .expect("connect to the guest");
            s.set_read_timeout(Some(BOOT_TIMEOUT)).unwrap();
            {
                use std::io::{Read, Write};
                s.write_all(b"over pollster\n").unwrap();
                let mut back = [0u8; 14];
                s.read_exact(&mut back).unwrap();
                assert_eq!(&back, b"over pollster\n");
            }
            drop(s);
            assert_eq!(
                connect_error(&vm, 5001, "refused").await,
                vmz::ErrorCode::ConnectionRefused
            );
            let listener = vm.vsock_listen(6000).unwrap();
            console.send_line("vsock-connect 6000 hi-pollster");
            let conn = bounded(listener.accept_async(), BOOT_TIMEOUT, "accept_async")
                .await
                .expect("the guest connects");
            drop(conn);
            console.expect("vmz-guest: vsock reply []", BOOT_TIMEOUT);
            drop(listener);

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
