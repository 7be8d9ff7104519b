//! Paged answers: a query's items in answer order, cut into pages of at most [`PAGE_ITEMS`]
//! items and about [`PAGE_BYTES`] bytes (always at least one item), each page naming where the
//! next one starts. The cursor is the sort key of a page's last item, so a page after a change
//! neither repeats nor skips what did not change.

use crate::error::{ApiError, ApiResult};

/// Most items in one page.
pub const PAGE_ITEMS: usize = 200;
/// About the most bytes of items in one page (JSON-encoded): well under a session's outbound
/// budget (4 MiB), so a page never cuts off the session that asked for it.
pub const PAGE_BYTES: usize = 256 * 1024;

/// An item's place in the answer: pages run in ascending key order.
pub type Key = (i64, i64);

/// Read a cursor (`"<a>_<b>"`, as [`cursor`] writes it).
pub fn parse_cursor(s: &str) -> ApiResult<Key> {
    let bad = || ApiError::invalid("cursor is not one this server gave");
    let (a, b) = s.split_once('_').ok_or_else(bad)?;
    Ok((a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?))
}

/// The cursor of the page that ends with `key`.
pub fn cursor(key: Key) -> String {
    format!("{}_{}", key.0, key.1)
}

/// The page of `items` after `after` (all of them from the start when `None`): items in key
/// order, as many as fit, and the cursor of the next page when some are left. `size` is an
/// item's cost in bytes, asked once per item in order, up to the first that does not fit.
pub fn page<T>(
    mut items: Vec<(Key, T)>,
    after: Option<Key>,
    mut size: impl FnMut(&T) -> usize,
) -> (Vec<T>, Option<String>) {
    items.sort_by_key(|(k, _)| *k);
    let mut out = Vec::new();
    let mut bytes = 0;
    let mut last = None;
    for (k, item) in items
        .into_iter()
        .filter(|(k, _)| after.is_none_or(|a| *k > a))
    {
        let cost = size(&item);
        if !out.is_empty() && (out.len() >= PAGE_ITEMS || bytes + cost > PAGE_BYTES) {
            return (out, last.map(cursor));
        }
        bytes += cost;
        last = Some(k);
        out.push(item);
    }
    (out, None)
}

/// An item's cost in a page: its JSON size (MessagePack is smaller), as [`page`] callers and
/// [`newest_within_budget`] count it.
pub fn json_size<T: serde::Serialize>(item: &T) -> usize {
    serde_json::to_vec(item).map_or(0, |v| v.len())
}

/// How many of `items` (oldest first), counted from the newest, fit in [`PAGE_BYTES`] — always
/// at least one: a page of history is the newest entries that fit.
pub fn newest_within_budget<T>(items: &[T], mut size: impl FnMut(&T) -> usize) -> usize {
    let mut bytes = 0;
    let mut kept = 0;
    for item in items.iter().rev() {
        let cost = size(item);
        if kept > 0 && bytes + cost > PAGE_BYTES {
            break;
        }
        bytes += cost;
        kept += 1;
    }
    kept
}

/// Most entries in one page of an admin list, and the default.
pub const LIST_PAGE_MAX: usize = 1000;
pub const LIST_PAGE_DEFAULT: usize = 100;

/// A page of an admin list (`?after=ID&limit=N`): entries in id order after the id `after`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListPage {
    pub after: Option<String>,
    pub limit: Option<usize>,
}

impl ListPage {
    /// Of `entries` (each with its id), the page asked for, and the `after` of the next page
    /// when entries are left.
    pub fn cut<T>(&self, mut entries: Vec<(String, T)>) -> ApiResult<(Vec<T>, Option<String>)> {
        let limit = self.limit.unwrap_or(LIST_PAGE_DEFAULT);
        if !(1..=LIST_PAGE_MAX).contains(&limit) {
            return Err(ApiError::invalid(format!(
                "limit must be 1 to {LIST_PAGE_MAX}"
            )));
        }
        entries.retain(|(id, _)| self.after.as_deref().is_none_or(|a| id.as_str() > a));
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let more = entries.len() > limit;
        entries.truncate(limit);
        let next = entries.last().filter(|_| more).map(|(id, _)| id.clone());
        Ok((entries.into_iter().map(|(_, t)| t).collect(), next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_history_page_keeps_the_newest_that_fit_and_at_least_one() {
        let sizes = [100_000, 100_000, 100_000, 10];
        assert_eq!(
            newest_within_budget(&sizes, |s| *s),
            3,
            "the oldest does not fit"
        );
        assert_eq!(
            newest_within_budget(&[PAGE_BYTES * 3], |s| *s),
            1,
            "one, however large"
        );
        assert_eq!(newest_within_budget(&[1usize; 5], |s| *s), 5);
        assert_eq!(newest_within_budget::<usize>(&[], |s| *s), 0);
    }

    #[test]
    fn an_admin_list_is_cut_by_id_after_a_cursor() {
        let entries = |ids: &[&str]| -> Vec<(String, String)> {
            ids.iter()
                .map(|i| (i.to_string(), i.to_uppercase()))
                .collect()
        };
        let page = |after: Option<&str>, limit: Option<usize>| ListPage {
            after: after.map(str::to_owned),
            limit,
        };
        let all = entries(&["c", "a", "d", "b"]);
        let (got, next) = page(None, Some(3)).cut(all.clone()).expect("page");
        assert_eq!(
            (got, next.as_deref()),
            (vec!["A".into(), "B".into(), "C".into()], Some("c"))
        );
        let (got, next) = page(Some("c"), Some(3)).cut(all.clone()).expect("page");
        assert_eq!((got, next), (vec!["D".to_owned()], None));
        let (got, next) = page(Some("b"), Some(2)).cut(all.clone()).expect("page");
        assert_eq!(
            (got, next),
            (vec!["C".to_owned(), "D".to_owned()], None),
            "exactly full"
        );
        assert!(page(None, Some(0)).cut(all.clone()).is_err());
        assert!(page(None, Some(LIST_PAGE_MAX + 1)).cut(all).is_err());
    }

    #[test]
    fn pages_cover_everything_once_in_order() {
        let items: Vec<(Key, usize)> = (0..1_000).map(|i| ((i % 7, -i), i as usize)).collect();
        let mut seen = Vec::new();
        let mut after = None;
        let mut pages = 0;
        loop {
            let (page, next) = page(items.clone(), after, |_| 1_000);
            assert!(!page.is_empty() && page.len() <= PAGE_ITEMS);
            assert!(page.len() * 1_000 <= PAGE_BYTES);
            seen.extend(page);
            pages += 1;
            match next {
                Some(c) => after = Some(parse_cursor(&c).expect("cursor")),
                None => break,
            }
        }
        assert_eq!(
            pages,
            1_000usize.div_ceil(PAGE_ITEMS.min(PAGE_BYTES / 1_000))
        );
        let mut expected = items.clone();
        expected.sort_by_key(|(k, _)| *k);
        assert_eq!(
            seen,
            expected.into_iter().map(|(_, v)| v).collect::<Vec<_>>()
        );
    }

    #[test]
    fn one_big_item_still_makes_a_page() {
        let (p, next) = page(vec![((0, 0), 1), ((0, 1), 2)], None, |_| PAGE_BYTES * 2);
        assert_eq!((p, next), (vec![1], Some("0_0".to_owned())));
        assert!(parse_cursor("x").is_err());
        assert_eq!(parse_cursor("-5_3").expect("cursor"), (-5, 3));
    }
}
