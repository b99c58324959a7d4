//! Elastic input (`cluster.elastic`): the training input cut into pieces that the coordinator
//! hands to whichever worker asks next, so that workers can join a running job and take input
//! not yet read, and leave it with the rest of their piece going back to the others.
//!
//! A piece is slice `index` of `of`, split exactly as `of` fixed workers would split the input,
//! so its examples and batches are the same whoever reads it; a piece given back after `skip`
//! steps is read again from its start with those steps skipped, as a resumed worker skips its own.

use std::collections::VecDeque;

use starling_ps::control::Piece;

/// The pieces not yet trained on, and which worker holds which.
#[derive(Clone, Debug)]
pub struct Pool {
    /// Waiting pieces, in the order they are handed out (by pass, then index).
    queue: VecDeque<Piece>,
    /// Per worker rank: the piece it trains on and the steps of it it finished since.
    held: Vec<Option<(Piece, u64)>>,
}

impl Pool {
    /// Every piece of `passes` passes over an input cut into `pieces`.
    pub fn new(pieces: usize, passes: u32) -> Pool {
        let queue = (1..=passes)
            .flat_map(|pass| (0..pieces).map(move |index| Piece { pass, index, of: pieces, skip: 0 }))
            .collect();
        Pool { queue, held: Vec::new() }
    }

    /// The pieces left at a checkpoint's cut, none held.
    pub fn from_cut(left: &[Piece]) -> Pool {
        let mut queue: Vec<Piece> = left.to_vec();
        queue.sort();
        Pool { queue: queue.into(), held: Vec::new() }
    }

    /// The next piece for worker `rank`, which holds it from now on; `None` when none waits.
    pub fn take(&mut self, rank: usize) -> Option<Piece> {
        let piece = self.queue.pop_front()?;
        if self.held.len() <= rank {
            self.held.resize(rank + 1, None);
        }
        self.held[rank] = Some((piece, 0));
        Some(piece)
    }

    /// Worker `rank` finished a step of its piece.
    pub fn stepped(&mut self, rank: usize) {
        if let Some(Some((_, steps))) = self.held.get_mut(rank) {
            *steps += 1;
        }
    }

    /// Worker `rank` finished its piece (if it held one).
    pub fn finished(&mut self, rank: usize) {
        if let Some(h) = self.held.get_mut(rank) {
            *h = None;
        }
    }

    /// Worker `rank` left or was lost: what it had not trained on of its piece waits again, at
    /// the front; returns that remainder.
    pub fn give_back(&mut self, rank: usize) -> Option<Piece> {
        let (piece, steps) = self.held.get_mut(rank)?.take()?;
        let rest = Piece { skip: piece.skip + steps, ..piece };
        self.queue.push_front(rest);
        Some(rest)
    }

    /// Every piece not yet trained on, held ones from the step their workers reached: where a
    /// checkpoint taken now goes back to.
    pub fn cut(&self) -> Vec<Piece> {
        let held = self.held.iter().flatten().map(|(p, steps)| Piece { skip: p.skip + steps, ..*p });
        let mut left: Vec<Piece> = held.chain(self.queue.iter().copied()).collect();
        left.sort();
        left
    }

    /// No piece waits.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// No piece waits or is held: the input is all trained on.
    pub fn drained(&self) -> bool {
        self.queue.is_empty() && self.held.iter().all(Option::is_none)
    }

    /// Pieces waiting or held.
    pub fn left(&self) -> usize {
        self.queue.len() + self.held.iter().flatten().count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_go_out_by_pass_and_come_back_from_where_they_stopped() {
        let mut pool = Pool::new(3, 2);
        assert_eq!(pool.left(), 6);
        let a = pool.take(0).unwrap();
        let b = pool.take(4).unwrap();
        assert_eq!((a.pass, a.index, b.index), (1, 0, 1));
        pool.stepped(4);
        pool.stepped(4);
        assert_eq!(pool.cut()[1], Piece { skip: 2, ..b });
        assert_eq!(pool.give_back(4), Some(Piece { skip: 2, ..b }));
        assert_eq!(pool.give_back(4), None, "a piece is given back once");
        // The remainder goes out first, to whoever asks.
        assert_eq!(pool.take(1), Some(Piece { skip: 2, ..b }));
        pool.finished(0);
        pool.finished(1);
        let rest: Vec<_> = std::iter::from_fn(|| pool.take(2).inspect(|_| pool.finished(2))).collect();
        assert_eq!(rest.len(), 4);
        assert_eq!(rest[0].index, 2);
        assert!(rest[1..].iter().all(|p| p.pass == 2));
        assert!(pool.drained());
    }

    #[test]
    fn a_cut_restores_every_piece_not_finished() {
        let mut pool = Pool::new(2, 1);
        let p = pool.take(0).unwrap();
        pool.stepped(0);
        let back = Pool::from_cut(&pool.cut());
        assert_eq!(back.left(), 2);
        assert_eq!(back.cut()[0], Piece { skip: 1, ..p });
    }
}
