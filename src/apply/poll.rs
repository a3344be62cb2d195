//! `poll_until`: ask something again and again, waiting longer each time as a backoff says,
//! until it answers, a deadline passes, the backoff runs out or the run is interrupted. The one
//! place the executor, the address wait and the wait for VMs still being made (`commands::
//! observe_settled`) poll from, so none writes its own doubling loop.

use std::future::Future;
use std::ops::ControlFlow;

use backon::BackoffBuilder;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How a poll ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Polled<T, C> {
    /// The probe answered.
    Done(T),
    /// The deadline passed or the backoff ran out; the last answer that was not the end.
    GaveUp {
        /// What the probe said last, if it said anything.
        last: Option<C>,
    },
    /// The cancellation token fired.
    Cancelled,
}

/// When a poll stops without an answer.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PollLimits<'a> {
    /// No probe runs past it (one still running then is dropped) and no wait ends after it.
    pub(crate) deadline: Option<Instant>,
    /// Ends the poll at once, during a wait or before a probe.
    pub(crate) cancel: Option<&'a CancellationToken>,
}

/// Run `probe` until it breaks with an answer, waiting between probes as `backoff` says.
/// A probe that continues may say why (`C`): the last such word is returned when the poll gives
/// up. The first probe runs at once.
pub(crate) async fn poll_until<T, C, Probe, Asked>(
    backoff: impl BackoffBuilder,
    limits: PollLimits<'_>,
    mut probe: Probe,
) -> Polled<T, C>
where
    Probe: FnMut() -> Asked,
    Asked: Future<Output = ControlFlow<T, Option<C>>>,
{
    let mut delays = backoff.build();
    let mut last = None;
    loop {
        if limits.cancel.is_some_and(CancellationToken::is_cancelled) {
            return Polled::Cancelled;
        }
        let asked = match limits.deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, probe()).await.ok(),
            None => Some(probe().await),
        };
        match asked {
            Some(ControlFlow::Break(answer)) => return Polled::Done(answer),
            Some(ControlFlow::Continue(Some(said))) => last = Some(said),
            Some(ControlFlow::Continue(None)) | None => {}
        }
        let now = Instant::now();
        let remaining = match limits.deadline {
            Some(deadline) if now >= deadline => return Polled::GaveUp { last },
            Some(deadline) => Some(deadline - now),
            None => None,
        };
        let Some(delay) = delays.next() else {
            return Polled::GaveUp { last };
        };
        let delay = remaining.map_or(delay, |remaining| delay.min(remaining));
        match limits.cancel {
            Some(cancel) => tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = cancel.cancelled() => return Polled::Cancelled,
            },
            None => tokio::time::sleep(delay).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::time::Duration;

    use backon::{ConstantBuilder, ExponentialBuilder};

    use super::*;

    fn doubling() -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(Duration::from_secs(1))
            .with_factor(2.0)
            .without_max_times()
    }

    #[tokio::test(start_paused = true)]
    async fn probes_back_off_until_the_answer() {
        let started = Instant::now();
        let asked_at = std::cell::RefCell::new(Vec::new());
        let polled: Polled<&str, ()> = poll_until(doubling(), PollLimits::default(), || async {
            asked_at.borrow_mut().push(started.elapsed().as_millis());
            if asked_at.borrow().len() == 6 {
                ControlFlow::Break("ready")
            } else {
                ControlFlow::Continue(None)
            }
        })
        .await;
        assert_eq!(polled, Polled::Done("ready"));
        // 100, 200, 400, 800, then the 1 s ceiling (the timer adds up to a millisecond).
        let asked_at = asked_at.borrow();
        let waits: Vec<u128> = asked_at
            .windows(2)
            .map(|w| (w[1] - w[0]) / 10 * 10)
            .collect();
        assert_eq!(waits, vec![100, 200, 400, 800, 1000]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_backoff_running_out_gives_up_with_the_last_word() {
        let n_asked = Cell::new(0);
        let backoff = ConstantBuilder::default()
            .with_delay(Duration::from_millis(50))
            .with_max_times(3);
        let polled: Polled<(), String> = poll_until(backoff, PollLimits::default(), || async {
            n_asked.set(n_asked.get() + 1);
            ControlFlow::Continue(Some(format!("not yet ({})", n_asked.get())))
        })
        .await;
        assert_eq!(n_asked.get(), 4);
        assert_eq!(
            polled,
            Polled::GaveUp {
                last: Some("not yet (4)".into())
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_ends_waits_and_slow_probes() {
        let started = Instant::now();
        let limits = PollLimits {
            deadline: Some(started + Duration::from_millis(1000)),
            cancel: None,
        };
        let n_asked = Cell::new(0);
        let polled: Polled<(), &str> = poll_until(doubling(), limits, || async {
            n_asked.set(n_asked.get() + 1);
            if n_asked.get() == 1 {
                ControlFlow::Continue(Some("agent not running"))
            } else {
                // Hangs: only the deadline ends it.
                tokio::time::sleep(Duration::from_secs(3600)).await;
                ControlFlow::Break(())
            }
        })
        .await;
        assert_eq!(
            polled,
            Polled::GaveUp {
                last: Some("agent not running")
            }
        );
        assert_eq!(started.elapsed(), Duration::from_millis(1000));
    }

    #[tokio::test(start_paused = true)]
    async fn cancellation_ends_a_wait_at_once() {
        let cancel = CancellationToken::new();
        let fire = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(250)).await;
            fire.cancel();
        });
        let started = Instant::now();
        let limits = PollLimits {
            deadline: None,
            cancel: Some(&cancel),
        };
        let backoff = ConstantBuilder::default()
            .with_delay(Duration::from_secs(60))
            .without_max_times();
        let polled: Polled<(), ()> =
            poll_until(backoff, limits, || async { ControlFlow::Continue(None) }).await;
        assert_eq!(polled, Polled::Cancelled);
        assert_eq!(started.elapsed(), Duration::from_millis(250));
    }
}
