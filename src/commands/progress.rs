//! Progress of `apply` and `destroy` on standard error, behind one small adapter: one plain line
//! per event (pipes, CI logs, tests), or on a terminal a spinner per running change (indicatif)
//! with the finished steps printed above the spinners. The words are `render::event_line`'s
//! either way; `main` picks the kind, so tests always get plain lines.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::apply::{Event, EventSink};
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
}

struct Spinners {
    multi: MultiProgress,
    running: Mutex<BTreeMap<ResourceKey, (ProgressBar, Action)>>,
}

impl Progress {
    /// A display of the given kind.
    pub fn new(mode: ProgressMode) -> Arc<Progress> {
        let spinners = (mode == ProgressMode::Spinners).then(|| Spinners {
            multi: MultiProgress::new(),
            running: Mutex::default(),
        });
        Arc::new(Progress { spinners })
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
        let Some(spinners) = &self.spinners else {
            eprintln!("{}", render::event_line(event));
            return;
        };
        let mut running = spinners
            .running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match event {
            Event::Started { key, action } => {
                let bar = spinners.multi.add(ProgressBar::new_spinner());
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
            let _ = spinners.multi.clear();
        }
    }
}
