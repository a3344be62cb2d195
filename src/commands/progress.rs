//! Progress of `apply` and `destroy` on standard error, behind one small adapter: one plain line
//! per event (pipes, CI logs, tests), or on a terminal a spinner per running change (indicatif)
//! with the finished steps printed above the spinners. The words are `render::event_line`'s
//! either way; `main` picks the kind, so tests always get plain lines. Both carry the overall
//! count (`12/30 done, 2 failed`): on a terminal as a bar under the spinners, in plain lines
//! at the end of each finished change's line.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::apply::{Event, EventSink, StepResult};
use crate::ownership::ResourceKey;
use crate::plan::Action;
use crate::render;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// One plain line per event.
    Lines,
    /// A spinner per running change (standard error is a terminal).
    Spinners,
}

/// The progress display of one run.
pub struct Progress {
    spinners: Option<Spinners>,
    total: usize,
    tally: Mutex<Tally>,
}

struct Spinners {
    multi: MultiProgress,
    /// The overall count, under the spinners.
    count: ProgressBar,
    running: Mutex<BTreeMap<ResourceKey, (ProgressBar, Action)>>,
}

/// Changes that ended so far (any result), and how many of them failed.
#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    done: usize,
    failed: usize,
}

/// The overall count: `12/30 done, 2 failed` (done: ended, whatever the result).
pub fn count_text(done: usize, total: usize, failed: usize) -> String {
    format!("{done}/{total} done, {failed} failed")
}

impl Progress {
    /// A display of the given kind for a run of `total` changes.
    pub fn new(mode: ProgressMode, total: usize) -> Arc<Progress> {
        let spinners = (mode == ProgressMode::Spinners).then(|| {
            let multi = MultiProgress::new();
            let count = multi.add(ProgressBar::new(u64::try_from(total).unwrap_or(u64::MAX)));
            count.set_style(
                ProgressStyle::with_template("[{bar:30}] {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            count.set_message(count_text(0, total, 0));
            Spinners {
                multi,
                count,
                running: Mutex::default(),
            }
        });
        Arc::new(Progress {
            spinners,
            total,
            tally: Mutex::default(),
        })
    }

    /// Count a finished change; the count after it.
    fn count(&self, event: &Event) -> Option<String> {
        let Event::Finished { result, .. } = event else {
            return None;
        };
        let mut tally = self
            .tally
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        tally.done += 1;
        if matches!(result, StepResult::Failed(_)) {
            tally.failed += 1;
        }
        Some(count_text(tally.done, self.total, tally.failed))
    }

    /// A line that stays: above the spinners, or plain.
    pub fn line(&self, text: &str) {
        match &self.spinners {
            Some(spinners) => {
                let _ = spinners.multi.println(text);
            }
            None => eprintln!("{text}"),
        }
    }

    /// The event sink that feeds this display (events come from several tasks at once).
    pub fn sink(self: &Arc<Self>) -> EventSink {
        let progress = Arc::clone(self);
        Arc::new(move |event: Event| progress.show(&event))
    }

    fn show(&self, event: &Event) {
        let count = self.count(event);
        let Some(spinners) = &self.spinners else {
            match count {
                Some(count) => eprintln!("{} ({count})", render::event_line(event)),
                None => eprintln!("{}", render::event_line(event)),
            }
            return;
        };
        if let Some(count) = &count {
            spinners.count.inc(1);
            spinners.count.set_message(count.clone());
        }
        let mut running = spinners
            .running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match event {
            Event::Started { key, action } => {
                let bar = spinners
                    .multi
                    .insert_before(&spinners.count, ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.set_message(render::progress_message(key, *action, None));
                bar.enable_steady_tick(Duration::from_millis(120));
                running.insert(key.clone(), (bar, *action));
            }
            Event::Step { key, what } => {
                let _ = spinners.multi.println(render::event_line(event));
                if let Some((bar, action)) = running.get(key) {
                    bar.set_message(render::progress_message(key, *action, Some(what)));
                }
            }
            Event::Finished { key, .. } => {
                if let Some((bar, _)) = running.remove(key) {
                    bar.finish_and_clear();
                    spinners.multi.remove(&bar);
                }
                let _ = spinners.multi.println(render::event_line(event));
            }
        }
    }

    /// Remove whatever spinner is left, before the summary is printed.
    pub fn finish(&self) {
        if let Some(spinners) = &self.spinners {
            let mut running = spinners
                .running
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            for (_, (bar, _)) in std::mem::take(&mut *running) {
                bar.finish_and_clear();
            }
            spinners.count.finish_and_clear();
            let _ = spinners.multi.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(name: &str, result: StepResult) -> Event {
        Event::Finished {
            key: ResourceKey::new(crate::ownership::ResourceKind::Clone, name),
            action: Action::Create,
            result,
        }
    }

    #[test]
    fn each_finished_change_moves_the_count_and_failures_are_counted() {
        let progress = Progress::new(ProgressMode::Lines, 3);
        let step = Event::Step {
            key: ResourceKey::new(crate::ownership::ResourceKind::Clone, "a"),
            what: "start".into(),
        };
        assert_eq!(progress.count(&step), None);
        assert_eq!(
            progress.count(&finished("a", StepResult::Ok)).as_deref(),
            Some("1/3 done, 0 failed")
        );
        assert_eq!(
            progress
                .count(&finished("b", StepResult::Failed("boom".into())))
                .as_deref(),
            Some("2/3 done, 1 failed")
        );
        assert_eq!(
            progress
                .count(&finished("c", StepResult::Skipped("b failed".into())))
                .as_deref(),
            Some("3/3 done, 1 failed")
        );
    }
}
