//! Stage scheduling: each stage the plan needs ([`crate::plan`]) runs in its own thread as soon
//! as the stages it reads are built, so independent stages (and their layer compression) run
//! at the same time. The first error wins: stages not yet started then do not start, and a
//! stage that panics wakes the stages waiting for it with an error.

use super::{lock, BuildError, Builder, Result, State};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Condvar, Mutex};

impl Builder<'_> {
    /// Builds the stages of `need`, each in its own thread as soon as the stages it needs are
    /// built, so independent stages run at the same time. The first error wins; stages not yet
    /// started then do not start.
    pub(super) fn build_stages(
        &self,
        need: &BTreeMap<usize, Vec<usize>>,
        globals: &BTreeMap<String, String>,
    ) -> Result<HashMap<usize, State>> {
        let shared: (Mutex<Done>, Condvar) = (Mutex::new((HashMap::new(), None)), Condvar::new());
        std::thread::scope(|scope| {
            for (&i, deps) in need {
                let shared = &shared;
                scope.spawn(move || {
                    let (m, cv) = shared;
                    let mut g = lock(m);
                    while g.1.is_none() && !deps.iter().all(|d| g.0.contains_key(d)) {
                        g = cv.wait(g).unwrap_or_else(|e| e.into_inner());
                    }
                    if g.1.is_some() {
                        return;
                    }
                    let inputs: HashMap<usize, State> =
                        deps.iter().map(|d| (*d, g.0[d].clone())).collect();
                    drop(g);
                    // Should the stage panic, the stages waiting for it must not wait forever.
                    let unwinding = Unwinding { shared, i };
                    let r = self.build_stage(i, globals, &inputs);
                    std::mem::forget(unwinding);
                    let mut g = lock(m);
                    match r {
                        Ok(st) => {
                            g.0.insert(i, st);
                        }
                        Err(e) => {
                            g.1.get_or_insert(e);
                        }
                    }
                    cv.notify_all();
                });
            }
        });
        let (done, err) = shared.0.into_inner().unwrap_or_else(|e| e.into_inner());
        match err {
            Some(e) => Err(e),
            None => Ok(done),
        }
    }
}

/// The stages built so far and the first error (see `Builder::build_stages`).
type Done = (HashMap<usize, State>, Option<BuildError>);

/// Alive while stage `i` builds; dropped only if that panics: records an error for it and
/// wakes the stages waiting.
struct Unwinding<'a> {
    shared: &'a (Mutex<Done>, Condvar),
    i: usize,
}

impl Drop for Unwinding<'_> {
    fn drop(&mut self) {
        let (m, cv) = self.shared;
        lock(m)
            .1
            .get_or_insert_with(|| BuildError::Other(format!("stage {} panicked", self.i)));
        cv.notify_all();
    }
}
