//! The order in which a reader's examples are learned: as read, or shuffled within a window.
//!
//! Both trainers (online and mini-batch) draw examples through here, so a job sees the same
//! example order whichever form it runs in.

use starling_core::rng::Rng;
use starling_core::{Example, ExampleBuf};
use starling_data::DataError;

use crate::config::JobConfig;
use crate::input::Reader;

/// The shuffle of thread or worker `rank` in `pass`: one stream per (seed, pass, rank), so
/// resuming at a pass replays it exactly.
pub fn shuffle_for(job: &JobConfig, pass: u32, rank: usize) -> Option<(usize, Rng)> {
    job.train.shuffle.then(|| {
        let seed = job.train.seed ^ (u64::from(pass) << 32) ^ rank as u64;
        (job.train.shuffle_window, Rng::new(seed))
    })
}

/// Calls `f(example, next)` on every example of `reader` in learning order; `next` is the example
/// that follows when it is already parsed (so callers can prefetch its rows).
pub fn for_each_example<E: From<DataError>>(
    reader: &mut Reader,
    shuffle: Option<(usize, Rng)>,
    mut f: impl FnMut(&Example, Option<&Example>) -> Result<(), E>,
) -> Result<(), E> {
    let mut ex = Example::default();
    match shuffle {
        None => {
            let mut next = Example::default();
            let mut more = reader.next(&mut ex)?;
            while more {
                more = reader.next(&mut next)?;
                f(&ex, more.then_some(&next))?;
                std::mem::swap(&mut ex, &mut next);
            }
        }
        Some((window, mut rng)) => {
            let mut buf = ExampleBuf::new();
            let mut order: Vec<u32> = Vec::with_capacity(window);
            let mut more = true;
            while more {
                buf.clear();
                while buf.len() < window {
                    if !reader.next(&mut ex)? {
                        more = false;
                        break;
                    }
                    buf.push(&ex);
                }
                order.clear();
                order.extend(0..buf.len() as u32);
                rng.shuffle(&mut order);
                for &i in &order {
                    buf.get_into(i as usize, &mut ex);
                    f(&ex, None)?;
                }
            }
        }
    }
    Ok(())
}
