//! THREAD (RFC 5256): THREAD=ORDEREDSUBJECT and THREAD=REFERENCES over a folder's matching
//! messages. Pure functions; no I/O.
//!
//! Both algorithms are RFC 5256's, step by step: ORDEREDSUBJECT groups by base subject
//! ([`sort::base_subject`]), the earliest message the parent of the others; REFERENCES links
//! messages by `References:` (else the first `In-Reply-To:` id), keeps a placeholder for a
//! message referred to but not present, prunes placeholders, merges top-level threads with
//! the same base subject and sorts siblings by sent date. "Sent date" is the `Date:` header
//! as an instant, or INTERNALDATE without one (the record's date); ties go by sequence
//! number. A message without a Message-ID, or with one an earlier message has, counts as
//! having an id of its own.

use std::collections::HashMap;
use std::num::NonZeroU32;

use imap_next::imap_types::core::{Vec1, Vec2};
use imap_next::imap_types::extensions::thread::Thread;

use super::sort::base_subject;

/// One message as THREAD sees it.
#[derive(Debug, Clone, Default)]
pub struct Message {
    /// What the answer calls it: its sequence number or UID.
    pub id: u32,
    /// Its sequence number (ties).
    pub seq: u32,
    /// Sent date (Unix seconds).
    pub date: i64,
    /// The decoded subject.
    pub subject: String,
    /// Message-ID, without angle brackets.
    pub message_id: Option<String>,
    pub references: Vec<String>,
    pub in_reply_to: Vec<String>,
}

/// THREAD=ORDEREDSUBJECT.
pub fn ordered_subject(messages: &[Message]) -> Vec<Thread> {
    let mut order: Vec<(String, &Message)> = messages
        .iter()
        .map(|m| (base_subject(&m.subject).0.to_uppercase(), m))
        .collect();
    order.sort_by(|(sa, a), (sb, b)| sa.cmp(sb).then(a.date.cmp(&b.date)).then(a.seq.cmp(&b.seq)));
    let mut threads: Vec<Vec<&Message>> = Vec::new();
    let mut last: Option<&str> = None;
    for (subject, m) in &order {
        match threads.last_mut() {
            Some(thread) if last == Some(subject.as_str()) => thread.push(m),
            _ => threads.push(vec![m]),
        }
        last = Some(subject);
    }
    threads.sort_by(|a, b| {
        let (a, b) = (a[0], b[0]);
        a.date.cmp(&b.date).then(a.seq.cmp(&b.seq))
    });
    threads
        .iter()
        .filter_map(|thread| {
            let (parent, children) = thread.split_first()?;
            let parent = nz(parent.id);
            Some(match children {
                [] => leaf(vec![parent]),
                [only] => leaf(vec![parent, nz(only.id)]),
                _ => Thread::Members {
                    prefix: Vec1::from(parent),
                    answers: Vec2::try_from(
                        children
                            .iter()
                            .map(|c| leaf(vec![nz(c.id)]))
                            .collect::<Vec<_>>(),
                    )
                    .ok(),
                },
            })
        })
        .collect()
}

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

fn leaf(prefix: Vec<NonZeroU32>) -> Thread {
    match Vec1::try_from(prefix) {
        Ok(prefix) => Thread::Members {
            prefix,
            answers: None,
        },
        Err(_) => Thread::Members {
            prefix: Vec1::from(NonZeroU32::MIN),
            answers: None,
        },
    }
}

/// A container of the REFERENCES algorithm: a message, or a placeholder (dummy) for one
/// that was referred to.
#[derive(Debug, Default, Clone)]
struct Node {
    /// Index into the messages; `None` for a dummy.
    message: Option<usize>,
    parent: Option<usize>,
    children: Vec<usize>,
}

struct Tree<'m> {
    messages: &'m [Message],
    nodes: Vec<Node>,
}

impl Tree<'_> {
    /// Whether `ancestor` is `node` or above it.
    fn is_ancestor(&self, ancestor: usize, mut node: usize) -> bool {
        // Parent links never form a loop (see `link`), so this ends; the bound is a guard.
        for _ in 0..=self.nodes.len() {
            if node == ancestor {
                return true;
            }
            match self.nodes[node].parent {
                Some(p) => node = p,
                None => return false,
            }
        }
        true
    }

    fn unlink(&mut self, child: usize) {
        if let Some(p) = self.nodes[child].parent.take() {
            self.nodes[p].children.retain(|&c| c != child);
        }
    }

    /// Makes `parent` the parent of `child` unless that makes a loop.
    fn link(&mut self, parent: usize, child: usize) -> bool {
        if self.is_ancestor(child, parent) {
            return false;
        }
        self.unlink(child);
        self.nodes[child].parent = Some(parent);
        self.nodes[parent].children.push(child);
        true
    }

    fn new_node(&mut self, message: Option<usize>) -> usize {
        self.nodes.push(Node {
            message,
            ..Node::default()
        });
        self.nodes.len() - 1
    }

    /// The message that stands for `node` when sorting and merging: its own, or its first
    /// child's for a dummy.
    fn representative(&self, node: usize) -> Option<&Message> {
        match self.nodes[node].message {
            Some(m) => self.messages.get(m),
            None => self.nodes[node]
                .children
                .first()
                .and_then(|&c| self.representative(c)),
        }
    }

    fn sort_key(&self, node: usize) -> (i64, u32) {
        self.representative(node)
            .map_or((i64::MAX, u32::MAX), |m| (m.date, m.seq))
    }

    fn sort_children(&mut self, list: &mut [usize]) {
        list.sort_by_key(|&n| self.sort_key(n));
    }

    fn to_thread(&self, node: usize) -> Option<Thread> {
        let n = &self.nodes[node];
        let Some(m) = n.message else {
            // A dummy (only at the top): its children side by side.
            let mut children: Vec<Thread> = n
                .children
                .iter()
                .filter_map(|&c| self.to_thread(c))
                .collect();
            if children.len() < 2 {
                return children.pop();
            }
            return Vec2::try_from(children)
                .ok()
                .map(|answers| Thread::Nested { answers });
        };
        let mut prefix = vec![nz(self.messages[m].id)];
        let mut at = n;
        while let [only] = at.children.as_slice() {
            let child = &self.nodes[*only];
            let Some(cm) = child.message else { break };
            prefix.push(nz(self.messages[cm].id));
            at = child;
        }
        let children: Vec<Thread> = at
            .children
            .iter()
            .filter_map(|&c| self.to_thread(c))
            .collect();
        let prefix = Vec1::try_from(prefix).ok()?;
        Some(Thread::Members {
            prefix,
            answers: Vec2::try_from(children).ok(),
        })
    }
}

/// THREAD=REFERENCES.
pub fn references(messages: &[Message]) -> Vec<Thread> {
    let mut tree = Tree {
        messages,
        nodes: Vec::with_capacity(messages.len() * 2),
    };
    // (1) Containers by Message-ID, messages in sequence order.
    let mut order: Vec<usize> = (0..messages.len()).collect();
    order.sort_by_key(|&i| messages[i].seq);
    let mut by_id: HashMap<&str, usize> = HashMap::new();
    let mut own: Vec<usize> = vec![0; messages.len()];
    for &i in &order {
        let node = tree.new_node(Some(i));
        own[i] = node;
        if let Some(id) = messages[i]
            .message_id
            .as_deref()
            .filter(|id| !id.is_empty())
        {
            match by_id.get(id) {
                // A dummy so far: the message fills it.
                Some(&existing) if tree.nodes[existing].message.is_none() => {
                    tree.nodes.pop();
                    tree.nodes[existing].message = Some(i);
                    own[i] = existing;
                }
                // A duplicate id: this one has an id of its own.
                Some(_) => {}
                None => {
                    by_id.insert(id, node);
                }
            }
        }
        let refs: Vec<&str> = if messages[i].references.is_empty() {
            messages[i]
                .in_reply_to
                .iter()
                .take(1)
                .map(String::as_str)
                .collect()
        } else {
            messages[i].references.iter().map(String::as_str).collect()
        };
        let mut previous: Option<usize> = None;
        for r in refs.iter().filter(|r| !r.is_empty()) {
            let container = match by_id.get(r) {
                Some(&c) => c,
                None => {
                    let c = tree.new_node(None);
                    by_id.insert(r, c);
                    c
                }
            };
            if let Some(p) = previous
                && tree.nodes[container].parent.is_none()
                && p != container
            {
                tree.link(p, container);
            }
            previous = Some(container);
        }
        // (1B) The last reference is the parent, whatever parent it had.
        let me = own[i];
        match previous {
            Some(p) if p != me && !tree.is_ancestor(me, p) => {
                tree.link(p, me);
            }
            _ => {}
        }
    }
    // (2) The root set.
    let mut roots: Vec<usize> = (0..tree.nodes.len())
        .filter(|&n| tree.nodes[n].parent.is_none())
        .collect();
    // (4) Prune dummies.
    roots = prune(&mut tree, roots, true);
    // (5) Merge top-level threads with the same base subject (a dummy's subject is its
    // earliest child's).
    sort_tree(&mut tree, &roots);
    tree.sort_children(&mut roots);
    let subject_of = |tree: &Tree<'_>, n: usize| -> (String, bool) {
        let subject = tree
            .representative(n)
            .map(|m| m.subject.as_str())
            .unwrap_or_default();
        let (base, reply) = base_subject(subject);
        (base.to_uppercase(), reply)
    };
    // For a dummy, whether its own subject is a reply does not matter; for a message it is
    // its own.
    let mut table: HashMap<String, usize> = HashMap::new();
    for &r in &roots {
        let (subject, reply) = subject_of(&tree, r);
        if subject.is_empty() {
            continue;
        }
        match table.get(&subject) {
            None => {
                table.insert(subject, r);
            }
            Some(&t) => {
                let t_dummy = tree.nodes[t].message.is_none();
                let r_dummy = tree.nodes[r].message.is_none();
                let t_reply = subject_of(&tree, t).1;
                if !t_dummy && (r_dummy || (t_reply && !reply)) {
                    table.insert(subject, r);
                }
            }
        }
    }
    for &r in &roots {
        let (subject, reply) = subject_of(&tree, r);
        let Some(t) = table.get(&subject).copied().filter(|&t| t != r) else {
            continue;
        };
        if subject.is_empty() {
            continue;
        }
        let t_dummy = tree.nodes[t].message.is_none();
        let r_dummy = tree.nodes[r].message.is_none();
        let t_reply = subject_of(&tree, t).1;
        if t_dummy && r_dummy {
            let children = std::mem::take(&mut tree.nodes[r].children);
            for c in children {
                tree.nodes[c].parent = None;
                tree.link(t, c);
            }
        } else if t_dummy || (reply && !t_reply) {
            tree.link(t, r);
        } else {
            let dummy = tree.new_node(None);
            tree.link(dummy, t);
            tree.link(dummy, r);
            table.insert(subject, dummy);
        }
    }
    // The roots now: every message or dummy with children that has no parent (merged and
    // pruned dummies have no children left).
    let mut roots: Vec<usize> = (0..tree.nodes.len())
        .filter(|&n| {
            let node = &tree.nodes[n];
            node.parent.is_none() && (node.message.is_some() || !node.children.is_empty())
        })
        .collect();
    // (6) Sort siblings by date, deepest first.
    sort_tree(&mut tree, &roots);
    tree.sort_children(&mut roots);
    roots.iter().filter_map(|&r| tree.to_thread(r)).collect()
}

/// RFC 5256 step (4): drops childless dummies and splices other dummies' children into
/// their place, except at the top, where a dummy with several children stays.
fn prune(tree: &mut Tree<'_>, list: Vec<usize>, top: bool) -> Vec<usize> {
    let mut out = Vec::with_capacity(list.len());
    for n in list {
        let children = std::mem::take(&mut tree.nodes[n].children);
        let children = prune(tree, children, false);
        tree.nodes[n].children = children.clone();
        if tree.nodes[n].message.is_some() || (top && children.len() > 1) {
            out.push(n);
            continue;
        }
        // A dummy goes; its children take its place.
        let parent = tree.nodes[n].parent;
        for &c in &children {
            tree.nodes[c].parent = parent;
        }
        tree.nodes[n].children.clear();
        tree.nodes[n].parent = None;
        out.extend(children);
    }
    if !top {
        // Keep the parents' children lists in step with the spliced nodes.
        return out;
    }
    for &n in &out {
        tree.nodes[n].parent = None;
    }
    out
}

fn sort_tree(tree: &mut Tree<'_>, list: &[usize]) {
    for &n in list {
        let children = tree.nodes[n].children.clone();
        sort_tree(tree, &children);
        let mut children = children;
        tree.sort_children(&mut children);
        tree.nodes[n].children = children;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: u32, date: i64, subject: &str, message_id: &str, references: &[&str]) -> Message {
        Message {
            id,
            seq: id,
            date,
            subject: subject.to_owned(),
            message_id: (!message_id.is_empty()).then(|| message_id.to_owned()),
            references: references.iter().map(|r| (*r).to_owned()).collect(),
            in_reply_to: Vec::new(),
        }
    }

    fn text(threads: &[Thread]) -> String {
        threads.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn references_table() {
        let cases: Vec<(&str, Vec<Message>, &str)> = vec![
            ("no messages", vec![], ""),
            (
                "two alone",
                vec![m(1, 1, "a", "a@b", &[]), m(2, 2, "b", "b@b", &[])],
                "(1)(2)",
            ),
            (
                "a chain",
                vec![
                    m(1, 1, "a", "a@b", &[]),
                    m(2, 2, "Re: a", "b@b", &["a@b"]),
                    m(3, 3, "Re: a", "c@b", &["a@b", "b@b"]),
                ],
                "(1 2 3)",
            ),
            (
                "two answers",
                vec![
                    m(1, 1, "a", "a@b", &[]),
                    m(2, 2, "x", "b@b", &["a@b"]),
                    m(3, 3, "y", "c@b", &["a@b"]),
                ],
                "(1 (2)(3))",
            ),
            (
                "a missing parent with two children (imaptest thread6)",
                vec![m(1, 1, "", "", &["a@b"]), m(2, 2, "", "", &["a@b"])],
                "((1)(2))",
            ),
            (
                "a duplicate id and a reply by subject (thread3)",
                vec![m(1, 1, "foo", "a@b", &[]), m(2, 2, "Re: foo", "a@b", &[])],
                "(1 2)",
            ),
            (
                "a missing parent with one child, then merged by subject (thread4)",
                vec![
                    m(1, 1, "foo", "a@b", &[]),
                    m(2, 2, "Re: foo", "b@b", &["c@b"]),
                ],
                "(1 2)",
            ),
            (
                "neither a reply: siblings under a dummy",
                vec![m(1, 1, "foo", "a@b", &[]), m(2, 2, "foo", "b@b", &[])],
                "((1)(2))",
            ),
            (
                "siblings sorted by date",
                vec![
                    m(1, 5, "a", "a@b", &[]),
                    m(2, 9, "x", "b@b", &["a@b"]),
                    m(3, 7, "y", "c@b", &["a@b"]),
                    m(4, 1, "z", "d@b", &[]),
                ],
                "(4)(1 (3)(2))",
            ),
            (
                "a reference loop is not followed",
                vec![m(1, 1, "a", "a@b", &["b@b"]), m(2, 2, "b", "b@b", &["a@b"])],
                "(2 1)",
            ),
            (
                "a message referring to itself",
                vec![m(1, 1, "a", "a@b", &["a@b"])],
                "(1)",
            ),
        ];
        for (what, messages, want) in cases {
            assert_eq!(text(&references(&messages)), want, "{what}");
        }
    }

    #[test]
    fn ordered_subject_table() {
        let messages = vec![
            m(1, 10, "a", "", &[]),
            m(2, 9, "b", "", &[]),
            m(3, 8, "Re: a", "", &[]),
            m(4, 7, "b", "", &[]),
            m(5, 30, "A", "", &[]),
            m(6, 29, "x", "", &[]),
            m(7, 28, "", "", &[]),
        ];
        assert_eq!(text(&ordered_subject(&messages)), "(4 2)(3 (1)(5))(7)(6)");
    }
}
