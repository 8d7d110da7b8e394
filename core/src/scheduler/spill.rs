//! Ready durable jobs that are not kept in memory: only their priority and push number are
//! known here (as ranges of consecutive push numbers per priority, so a run of pushed jobs costs
//! a few bytes in all); the rest of each job stays in the store until it is paged in.

use std::collections::BTreeMap;

/// Push numbers (`seq`) of spilled jobs, per priority, as ranges `start..=end`.
#[derive(Debug, Default)]
pub(crate) struct SpillSet {
    by_priority: BTreeMap<i32, BTreeMap<i64, i64>>,
    len: usize,
}

impl SpillSet {
    /// How many jobs are spilled.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds `seq` under `priority`; false when it is already there.
    pub(crate) fn insert(&mut self, priority: i32, seq: i64) -> bool {
        let ranges = self.by_priority.entry(priority).or_default();
        let before = ranges.range(..=seq).next_back().map(|(s, e)| (*s, *e));
        if let Some((_, end)) = before
            && seq <= end
        {
            return false;
        }
        let after = seq
            .checked_add(1)
            .and_then(|next| ranges.get(&next).map(|end| (next, *end)));
        match (before, after) {
            (Some((start, end)), Some((next, next_end))) if end + 1 == seq => {
                ranges.remove(&next);
                ranges.insert(start, next_end);
            }
            (Some((start, end)), _) if end + 1 == seq => {
                ranges.insert(start, seq);
            }
            (_, Some((next, next_end))) => {
                ranges.remove(&next);
                ranges.insert(seq, next_end);
            }
            _ => {
                ranges.insert(seq, seq);
            }
        }
        self.len += 1;
        true
    }

    /// Whether `seq` is spilled under `priority`.
    pub(crate) fn contains(&self, priority: i32, seq: i64) -> bool {
        self.by_priority.get(&priority).is_some_and(|ranges| {
            ranges
                .range(..=seq)
                .next_back()
                .is_some_and(|(_, end)| seq <= *end)
        })
    }

    /// Removes `seq` under `priority`; false when it was not there.
    pub(crate) fn remove(&mut self, priority: i32, seq: i64) -> bool {
        let Some(ranges) = self.by_priority.get_mut(&priority) else {
            return false;
        };
        let Some((start, end)) = ranges
            .range(..=seq)
            .next_back()
            .map(|(s, e)| (*s, *e))
            .filter(|(_, end)| seq <= *end)
        else {
            return false;
        };
        ranges.remove(&start);
        if start < seq {
            ranges.insert(start, seq - 1);
        }
        if seq < end {
            ranges.insert(seq + 1, end);
        }
        if ranges.is_empty() {
            self.by_priority.remove(&priority);
        }
        self.len -= 1;
        true
    }

    /// The job that runs first: the highest priority, then the lowest push number.
    pub(crate) fn best(&self) -> Option<(i32, i64)> {
        let (priority, ranges) = self.by_priority.iter().next_back()?;
        let (start, _) = ranges.iter().next()?;
        Some((*priority, *start))
    }

    /// Takes up to `max` (at least 1) of the first jobs of the best priority, in push order:
    /// that priority and the ranges taken.
    pub(crate) fn take_front(&mut self, max: usize) -> Option<(i32, Vec<(i64, i64)>)> {
        let max = max.max(1) as u64;
        let (&priority, ranges) = self.by_priority.iter_mut().next_back()?;
        let mut taken = Vec::new();
        let mut count: u64 = 0;
        while count < max {
            let Some((&start, &end)) = ranges.iter().next() else {
                break;
            };
            ranges.remove(&start);
            let size = (end - start) as u64 + 1;
            if count + size <= max {
                taken.push((start, end));
                count += size;
            } else {
                let last = start + (max - count) as i64 - 1;
                taken.push((start, last));
                ranges.insert(last + 1, end);
                count = max;
            }
        }
        if ranges.is_empty() {
            self.by_priority.remove(&priority);
        }
        self.len -= count as usize;
        Some((priority, taken))
    }

    /// Every spilled job, best first (tests).
    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = (i32, i64)> + '_ {
        self.by_priority.iter().rev().flat_map(|(p, ranges)| {
            ranges
                .iter()
                .flat_map(move |(s, e)| (*s..=*e).map(move |q| (*p, q)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_split_and_come_out_best_first() {
        let mut s = SpillSet::default();
        for seq in [5, 7, 6, 1, 2, 10] {
            assert!(s.insert(0, seq));
        }
        assert!(!s.insert(0, 6), "already there");
        assert!(s.insert(3, 8));
        assert_eq!(s.len(), 7);
        assert_eq!(s.best(), Some((3, 8)));
        assert_eq!(
            s.iter().collect::<Vec<_>>(),
            [(3, 8), (0, 1), (0, 2), (0, 5), (0, 6), (0, 7), (0, 10)]
        );
        assert!(s.remove(0, 6));
        assert!(!s.remove(0, 6));
        assert!(s.contains(0, 5) && s.contains(0, 7) && !s.contains(0, 6));
        assert_eq!(s.take_front(5), Some((3, vec![(8, 8)])));
        assert_eq!(s.take_front(3), Some((0, vec![(1, 2), (5, 5)])));
        assert_eq!(s.take_front(10), Some((0, vec![(7, 7), (10, 10)])));
        assert!(s.is_empty());
        assert_eq!(s.take_front(1), None);
    }

    #[test]
    fn a_million_consecutive_jobs_are_one_range() {
        let mut s = SpillSet::default();
        for seq in 0..1_000_000 {
            s.insert(0, seq);
        }
        assert_eq!(s.len(), 1_000_000);
        assert_eq!(s.by_priority[&0].len(), 1);
        assert_eq!(s.take_front(10), Some((0, vec![(0, 9)])));
        assert_eq!(s.best(), Some((0, 10)));
    }
}
