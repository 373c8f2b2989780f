use crate::Gift;

/// Sum of `gift_total_amount` per `gift_type`: the seed's
/// `SELECT gift_type, SUM(gift_total_amount) … GROUP BY gift_type`, folded
/// over one batch. The result is a handful of deltas that the store adds to
/// its running totals.
///
/// Gift types are few (1 to 10 on the seed's platform), so the sums live in
/// a small vector sorted by gift type rather than a hash map: a lookup is a
/// short binary search, and iteration comes out in gift-type order, which
/// keeps the output deterministic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GiftTypeTotals {
    sums: Vec<(i32, i64)>,
}

impl GiftTypeTotals {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one gift's amount to its type's total.
    pub fn add(&mut self, gift: &Gift) {
        self.add_amount(gift.gift_type, gift.amount);
    }

    /// Adds `amount` to the total of `gift_type`. Saturates instead of
    /// overflowing: amounts come from untrusted input, and a panic would
    /// abort the plugin.
    pub fn add_amount(&mut self, gift_type: i32, amount: i64) {
        match self.sums.binary_search_by_key(&gift_type, |&(t, _)| t) {
            Ok(i) => self.sums[i].1 = self.sums[i].1.saturating_add(amount),
            Err(i) => self.sums.insert(i, (gift_type, amount)),
        }
    }

    /// The total of one gift type, if any gift of it was added.
    pub fn get(&self, gift_type: i32) -> Option<i64> {
        self.sums
            .binary_search_by_key(&gift_type, |&(t, _)| t)
            .ok()
            .map(|i| self.sums[i].1)
    }

    /// Number of gift types seen.
    pub fn len(&self) -> usize {
        self.sums.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sums.is_empty()
    }

    /// Forgets every total, keeping the allocation.
    pub fn clear(&mut self) {
        self.sums.clear();
    }

    /// `(gift_type, total)` pairs, in ascending gift-type order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (i32, i64)> + '_ {
        self.sums.iter().copied()
    }
}

impl<'a> Extend<&'a Gift> for GiftTypeTotals {
    fn extend<I: IntoIterator<Item = &'a Gift>>(&mut self, gifts: I) {
        for gift in gifts {
            self.add(gift);
        }
    }
}
