//! Which controller node to dial next: each address once per round in a random order,
//! with the node that just dropped the link last in the next round, so an agent neither
//! sticks to one node forever nor dials a dead one again first. The delay between dials
//! is the link's jittered backoff.

use rand::Rng;
use rand::seq::SliceRandom;

/// The enrollment's controller addresses in the order they will be dialled.
#[derive(Debug, Clone)]
pub struct Rotation {
    all: Vec<String>,
    /// What is left of this round, next last.
    round: Vec<String>,
}

impl Rotation {
    /// A rotation over `controllers` (the enrollment record has at least one).
    pub fn new(controllers: &[String]) -> Rotation {
        Rotation {
            all: controllers.to_vec(),
            round: Vec::new(),
        }
    }

    /// The address to dial now; a new random round begins when one ends.
    pub fn next(&mut self, rng: &mut impl Rng) -> String {
        if self.round.is_empty() {
            self.round = self.all.clone();
            self.round.shuffle(rng);
        }
        self.round.pop().unwrap_or_default()
    }

    /// A link to `lost` was up and ended: the next round is random again, with `lost`
    /// dialled last (if it went down, the others are tried first).
    pub fn after_loss(&mut self, lost: &str, rng: &mut impl Rng) {
        let mut others: Vec<String> = self.all.iter().filter(|a| *a != lost).cloned().collect();
        others.shuffle(rng);
        // Popped from the end: `lost` first in the vector is dialled last.
        self.round = if others.len() < self.all.len() {
            std::iter::once(lost.to_owned()).chain(others).collect()
        } else {
            others
        };
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn list(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("10.0.0.{i}:4433")).collect()
    }

    #[test]
    fn each_round_dials_every_address_once() {
        let mut rng = StdRng::seed_from_u64(5);
        let mut r = Rotation::new(&list(3));
        for _ in 0..4 {
            let round: HashSet<String> = (0..3).map(|_| r.next(&mut rng)).collect();
            assert_eq!(round.len(), 3);
        }
    }

    #[test]
    fn the_first_pick_is_spread_over_the_nodes() {
        let mut rng = StdRng::seed_from_u64(9);
        let firsts: HashSet<String> = (0..50)
            .map(|_| Rotation::new(&list(3)).next(&mut rng))
            .collect();
        assert_eq!(firsts.len(), 3, "{firsts:?}");
    }

    #[test]
    fn the_node_that_dropped_the_link_is_dialled_last() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut r = Rotation::new(&list(3));
        for _ in 0..20 {
            let current = r.next(&mut rng);
            r.after_loss(&current, &mut rng);
            let round: Vec<String> = (0..3).map(|_| r.next(&mut rng)).collect();
            assert_eq!(round.last(), Some(&current), "{round:?}");
            assert!(!round.iter().take(2).any(|a| *a == current));
        }
    }

    #[test]
    fn one_controller_is_always_that_one() {
        let mut rng = StdRng::seed_from_u64(2);
        let mut r = Rotation::new(&list(1));
        let only = list(1).remove(0);
        assert_eq!(r.next(&mut rng), only);
        r.after_loss(&only, &mut rng);
        assert_eq!(r.next(&mut rng), only);
        assert_eq!(r.next(&mut rng), only);
    }
}
