//! Mosquitto's `acl_file`: `topic` lines for anonymous clients, `user NAME` sections, and
//! `pattern` lines with `%c` / `%u` for everyone.

use std::collections::HashMap;
use std::path::Path;

use super::{meaningful_lines, read, FileError};
use crate::broker::Authorizer;
use crate::topic::{split_shared, validate_topic_filter};
use crate::{ByteStr, TopicFilter, TopicName};

/// What a line grants or takes away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Write,
    ReadWrite,
    Deny,
}

impl Access {
    fn reads(self) -> bool {
        matches!(self, Access::Read | Access::ReadWrite)
    }
    fn writes(self) -> bool {
        matches!(self, Access::Write | Access::ReadWrite)
    }
}

/// One `topic` or `pattern` line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    access: Access,
    filter: String,
}

/// What is being checked.
#[derive(Debug, Clone, Copy)]
enum Check<'a> {
    /// Publishing to, or receiving a message on, a topic.
    Topic(&'a str, Access),
    /// Subscribing with a filter.
    Subscribe(&'a str),
}

/// A Mosquitto ACL file.
///
/// As an [`Authorizer`] it allows only what a line grants and a `deny` line does not take away:
/// a publish needs `write` (or `readwrite`) on a filter matching its topic; as in Mosquitto, a
/// subscription is granted when `read` (or `readwrite`) covers some topic it matches and no
/// `deny` covers all of it, and each delivery is checked against `read`
/// ([`Authorizer::can_receive`]). `topic` lines before the first `user` line
/// apply to clients without a user name, those after `user NAME` to that user, and `pattern`
/// lines to everyone, with `%u` the user name (a pattern with `%u` does nothing for an
/// anonymous client) and `%c` the client identifier, substituted in one pass; a pattern into
/// which a name would bring a `/`, `+`, `#` or `%` denies, as in Mosquitto.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AclFile {
    anonymous: Vec<Rule>,
    users: HashMap<String, Vec<Rule>>,
    patterns: Vec<Rule>,
}

impl AclFile {
    /// Reads and parses the file at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<AclFile, FileError> {
        let path = path.as_ref();
        AclFile::parse(&read(path)?).map_err(|e| e.in_file(path))
    }

    /// Parses the text of an ACL file; blank lines and `#` comments are skipped.
    pub fn parse(text: &str) -> Result<AclFile, FileError> {
        let mut acl = AclFile::default();
        let mut user: Option<String> = None;
        for (n, line) in meaningful_lines(text) {
            let (keyword, rest) = line
                .split_once(char::is_whitespace)
                .map_or((line, ""), |(k, r)| (k, r.trim_start()));
            match keyword {
                "user" => {
                    if rest.is_empty() {
                        return Err(FileError::line(n, "user without a name"));
                    }
                    acl.users.entry(rest.to_owned()).or_default();
                    user = Some(rest.to_owned());
                }
                "topic" | "pattern" => {
                    let rule = parse_rule(rest).map_err(|r| FileError::line(n, r))?;
                    match (keyword, &user) {
                        ("pattern", _) => acl.patterns.push(rule),
                        (_, Some(u)) => acl.users.entry(u.clone()).or_default().push(rule),
                        (_, None) => acl.anonymous.push(rule),
                    }
                }
                other => {
                    return Err(FileError::line(
                        n,
                        format!("unknown keyword {other:?} (expected user, topic or pattern)"),
                    ))
                }
            }
        }
        Ok(acl)
    }

    /// Whether the client may receive a message published on `topic` (for a broker that checks
    /// each delivery).
    pub fn can_read(&self, client_id: &str, username: Option<&str>, topic: &str) -> bool {
        self.allows(client_id, username, Check::Topic(topic, Access::Read))
    }

    /// Whether the client may publish on `topic`.
    pub fn can_write(&self, client_id: &str, username: Option<&str>, topic: &str) -> bool {
        self.allows(client_id, username, Check::Topic(topic, Access::Write))
    }

    /// Whether the client may subscribe with `filter` (`$share/GROUP/` is looked through): as
    /// in Mosquitto, when some topic it matches may be read and a `deny` does not cover all of
    /// it. Each message is then checked with [`AclFile::can_read`] on delivery.
    pub fn can_read_filter(&self, client_id: &str, username: Option<&str>, filter: &str) -> bool {
        let filter = split_shared(filter).map_or(filter, |(_, f)| f);
        self.allows(client_id, username, Check::Subscribe(filter))
    }

    /// Judges `check` against the client's section, then the patterns with their
    /// substitutions; a pattern whose substitution would change the filter's shape (a `/`,
    /// `+`, `#` or `%` in the user name or client identifier) denies.
    fn allows(&self, client_id: &str, username: Option<&str>, check: Check<'_>) -> bool {
        let own = match username {
            Some(u) => self.users.get(u).map_or(&[][..], Vec::as_slice),
            None => &self.anonymous,
        };
        let mut granted = false;
        let mut judge = |access: Access, filter: &str| -> bool {
            match check {
                Check::Topic(topic, want) => {
                    if crate::topic::matches(filter, topic) {
                        if access == Access::Deny {
                            return false;
                        }
                        granted |= (want == Access::Read && access.reads())
                            || (want == Access::Write && access.writes());
                    }
                }
                Check::Subscribe(sub) => {
                    if access == Access::Deny {
                        if covers(filter, sub) {
                            return false;
                        }
                    } else if access.reads() && overlaps(filter, sub) {
                        granted = true;
                    }
                }
            }
            true
        };
        for rule in own {
            if !judge(rule.access, &rule.filter) {
                return false;
            }
        }
        for rule in &self.patterns {
            if rule.filter.contains("%u") && username.is_none() {
                continue;
            }
            let Some(filter) = substitute(&rule.filter, client_id, username) else {
                return false;
            };
            if !judge(rule.access, &filter) {
                return false;
            }
        }
        granted
    }
}

impl Authorizer for AclFile {
    fn can_publish(
        &self,
        client_id: &ByteStr,
        username: Option<&ByteStr>,
        topic: &TopicName,
    ) -> bool {
        self.can_write(
            client_id.as_str(),
            username.map(ByteStr::as_str),
            topic.as_str(),
        )
    }

    fn can_subscribe(
        &self,
        client_id: &ByteStr,
        username: Option<&ByteStr>,
        filter: &TopicFilter,
    ) -> bool {
        self.can_read_filter(
            client_id.as_str(),
            username.map(ByteStr::as_str),
            filter.as_str(),
        )
    }

    fn can_receive(
        &self,
        client_id: &ByteStr,
        username: Option<&ByteStr>,
        topic: &TopicName,
    ) -> bool {
        self.can_read(
            client_id.as_str(),
            username.map(ByteStr::as_str),
            topic.as_str(),
        )
    }
}

/// The pattern `filter` with `%c` replaced by `client_id` and `%u` by `username`, in one pass
/// (a value is never read again for `%c` / `%u`); `None` when a value it puts in is empty or
/// has a character that would add a level or a wildcard to the filter (`/`, `+`, `#`) or that
/// could read as a substitution (`%`), as Mosquitto refuses them.
fn substitute(filter: &str, client_id: &str, username: Option<&str>) -> Option<String> {
    let safe = |v: &str| !v.is_empty() && !v.contains(['/', '+', '#', '%']);
    let mut out = String::with_capacity(filter.len() + client_id.len());
    let mut rest = filter;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let value = match rest[at + 1..].chars().next() {
            Some('c') => Some(client_id),
            Some('u') => Some(username?),
            _ => None,
        };
        match value {
            Some(v) if safe(v) => {
                out.push_str(v);
                rest = &rest[at + 2..];
            }
            Some(_) => return None,
            None => {
                out.push('%');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    Some(out)
}

/// `[read|write|readwrite|deny] FILTER` (no access word is `readwrite`, as in Mosquitto).
fn parse_rule(rest: &str) -> Result<Rule, String> {
    let (word, after) = rest
        .split_once(char::is_whitespace)
        .map_or((rest, ""), |(w, a)| (w, a.trim_start()));
    let (access, filter) = match word {
        "read" => (Access::Read, after),
        "write" => (Access::Write, after),
        "readwrite" => (Access::ReadWrite, after),
        "deny" => (Access::Deny, after),
        _ => (Access::ReadWrite, rest),
    };
    if filter.is_empty() {
        return Err("topic or pattern without a filter".into());
    }
    validate_topic_filter(filter).map_err(|e| format!("bad filter {filter:?}: {e}"))?;
    Ok(Rule {
        access,
        filter: filter.to_owned(),
    })
}

/// Whether every topic the filter `sub` matches is matched by `acl`.
fn covers(acl: &str, sub: &str) -> bool {
    let mut a = acl.split('/');
    let mut s = sub.split('/');
    let mut first = true;
    loop {
        let dollar_guard = |s: &str| first && s.starts_with('$');
        match (a.next(), s.next()) {
            (Some("#"), Some(sl)) => return !dollar_guard(sl),
            (Some("#"), None) => return true,
            (Some(_), Some("#")) => return false,
            (Some("+"), Some(sl)) if !dollar_guard(sl) => {}
            (Some(al), Some(sl)) if al == sl && al != "+" => {}
            (None, None) => return true,
            _ => return false,
        }
        first = false;
    }
}

/// Whether some topic is matched by both filters.
fn overlaps(x: &str, y: &str) -> bool {
    let mut a = x.split('/');
    let mut b = y.split('/');
    let mut first = true;
    loop {
        let (al, bl) = (a.next(), b.next());
        let wild = |l: Option<&str>| matches!(l, Some("#" | "+"));
        // A wildcard at the first level does not reach `$` topics.
        if first {
            let dollar = |l: Option<&str>| l.is_some_and(|l| l.starts_with('$'));
            if (wild(al) && dollar(bl)) || (wild(bl) && dollar(al)) {
                return false;
            }
        }
        match (al, bl) {
            (Some("#"), _) | (_, Some("#")) => return true,
            (Some("+"), Some(_)) | (Some(_), Some("+")) => {}
            (Some(p), Some(q)) if p == q => {}
            (None, None) => return true,
            _ => return false,
        }
        first = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "\
# anonymous clients
topic read public/#
topic deny public/secret

user alice
topic readwrite alice/#
topic write sensors/+/temp
topic read sensors/#
topic deny sensors/private/#
topic plain/both

user bob smith
topic read bob/only

# everyone
pattern readwrite clients/%c/#
pattern write users/%u/out
";

    fn acl() -> AclFile {
        AclFile::parse(FILE).unwrap()
    }

    #[test]
    fn anonymous_rules_come_before_the_first_user_line() {
        let a = acl();
        assert!(a.can_read("c", None, "public/news"));
        assert!(a.can_read_filter("c", None, "public/news/#"));
        assert!(!a.can_read("c", None, "public/secret"));
        assert!(!a.can_write("c", None, "public/news"));
        // A user gets their own section, not the anonymous one.
        assert!(!a.can_read("c", Some("alice"), "public/news"));
    }

    #[test]
    fn user_sections_grant_read_write_and_readwrite() {
        let a = acl();
        let alice = Some("alice");
        assert!(a.can_write("c", alice, "alice/x/y") && a.can_read("c", alice, "alice/x"));
        assert!(a.can_write("c", alice, "sensors/k/temp"));
        assert!(!a.can_write("c", alice, "sensors/k/hum"));
        assert!(a.can_read("c", alice, "sensors/k/hum"));
        assert!(a.can_write("c", alice, "plain/both") && a.can_read("c", alice, "plain/both"));
        assert!(!a.can_write("c", Some("bob"), "alice/x"));
        assert!(a.can_read("c", Some("bob smith"), "bob/only"));
        assert!(!a.can_read("c", Some("mallory"), "alice/x"));
    }

    #[test]
    fn deny_wins_over_any_grant() {
        let a = acl();
        let alice = Some("alice");
        assert!(!a.can_read("c", alice, "sensors/private/x"));
        assert!(!a.can_write("c", alice, "sensors/private/temp"));
        // A subscription that overlaps a deny is granted; its messages are checked one by one.
        assert!(a.can_read_filter("c", alice, "sensors/#"));
        assert!(a.can_read_filter("c", alice, "sensors/+/x"));
        // One that the deny covers whole is refused.
        assert!(!a.can_read_filter("c", alice, "sensors/private/#"));
        assert!(!a.can_read_filter("c", alice, "sensors/private/x"));
    }

    #[test]
    fn subscriptions_need_a_read_grant_on_some_topic_of_the_filter() {
        let a = acl();
        let alice = Some("alice");
        assert!(a.can_read_filter("c", alice, "alice/#"));
        assert!(a.can_read_filter("c", alice, "alice"));
        assert!(a.can_read_filter("c", alice, "$share/g/alice/+/z"));
        // `#` may see alice's topics: granted, and filtered on delivery.
        assert!(a.can_read_filter("c", alice, "#"));
        assert!(a.can_read_filter("c", alice, "+/x"));
        assert!(!a.can_read_filter("c", alice, "elsewhere/#"));
        assert!(!a.can_read("c", alice, "elsewhere/x"));
        // write-only grants no subscription
        assert!(!a.can_read_filter("c", Some("bob"), "users/bob/out"));
    }

    #[test]
    fn patterns_substitute_client_id_and_user_name_for_everyone() {
        let a = acl();
        assert!(a.can_write("dev1", None, "clients/dev1/up"));
        assert!(a.can_read_filter("dev1", Some("alice"), "clients/dev1/#"));
        assert!(!a.can_write("dev1", None, "clients/dev2/up"));
        assert!(a.can_write("c", Some("bob"), "users/bob/out"));
        assert!(!a.can_write("c", Some("bob"), "users/alice/out"));
        // %u does nothing for anonymous clients, and wildcards in names never widen a pattern.
        assert!(!a.can_write("c", None, "users//out"));
        assert!(!a.can_write("+", None, "clients/+/x"));
        assert!(!a.can_write("c", Some("#"), "users/x/out"));
    }

    #[test]
    fn substituted_values_cannot_add_levels_wildcards_or_substitutions() {
        let a = acl();
        // The README's `pattern readwrite clients/%c/#`: "dev1/cmd" must not reach dev1.
        assert!(!a.can_write("dev1/cmd", None, "clients/dev1/cmd/x"));
        assert!(!a.can_read("dev1/cmd", None, "clients/dev1/cmd"));
        assert!(!a.can_read_filter("dev1/cmd", None, "clients/dev1/#"));
        assert!(!a.can_write("c", Some("bob/x"), "users/bob/x/out"));
        assert!(!a.can_write("a%b", None, "clients/a%b/x"));
        // One pass: a client id of "%u" is that text, never the user name.
        let p = AclFile::parse("pattern write clients/%c/x\n").unwrap();
        assert!(!p.can_write("%u", Some("alice"), "clients/alice/x"));
        assert!(!p.can_write("%u", Some("alice"), "clients/%u/x"));
        assert_eq!(
            substitute("a/%c/%u/%x", "c1", Some("u1")).as_deref(),
            Some("a/c1/u1/%x")
        );
        assert_eq!(substitute("a/%c", "", None), None);
        assert_eq!(substitute("a/%u", "c", None), None);
    }

    #[test]
    fn shared_subscriptions_are_judged_by_the_filter_they_share() {
        let a = acl();
        let alice = Some("alice");
        // The group name grants nothing, whatever it says.
        assert!(!a.can_read_filter("c", Some("bob"), "$share/alice/alice/#"));
        assert!(!a.can_read_filter("c", Some("bob"), "$share/g/alice/#"));
        assert!(a.can_read_filter("c", alice, "$share/bob/alice/#"));
        // A deny covers the shared filter as it covers the plain one.
        assert!(!a.can_read_filter("c", alice, "$share/g/sensors/private/#"));
        assert!(a.can_read_filter("c", alice, "$share/g/sensors/#"));
        assert!(!a.can_read("c", alice, "sensors/private/x"));
        // The filter after the group is what must be granted, `$` rules included.
        let d = AclFile::parse("topic read #\n").unwrap();
        assert!(!d.can_read_filter("c", None, "$share/g/$SYS/#"));
        assert!(d.can_read_filter("c", None, "$share/g/a/#"));
    }

    #[test]
    fn an_empty_file_denies_everything() {
        let a = AclFile::parse("# nothing\n\n").unwrap();
        assert!(!a.can_read("c", None, "a") && !a.can_write("c", Some("u"), "a"));
    }

    #[test]
    fn wildcards_do_not_reach_dollar_topics() {
        let a = AclFile::parse("topic read #\ntopic deny +/x\n").unwrap();
        assert!(a.can_read("c", None, "a/b"));
        assert!(!a.can_read("c", None, "$SYS/broker/load"));
        assert!(!a.can_read_filter("c", None, "$SYS/#"));
        assert!(a.can_read_filter("c", None, "a/#")); // overlaps the deny on +/x: granted
        assert!(!a.can_read("c", None, "a/x")); // and a/x is not delivered
        assert!(!a.can_read_filter("c", None, "b/x")); // covered by the deny
        assert!(a.can_read_filter("c", None, "a/y"));
    }

    #[test]
    fn bad_lines_are_refused_with_their_line_number() {
        for bad in [
            "topic",
            "topic read",
            "topic read a/#/b",
            "topic write a+",
            "pattern deny",
            "user",
            "users alice",
            "acl a/b",
        ] {
            match AclFile::parse(&format!("# c\ntopic read ok\n{bad}\n")) {
                Err(FileError::Line { line: 3, .. }) => {}
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn cover_and_overlap_walk_the_levels() {
        assert!(covers("a/#", "a") && covers("a/#", "a/+/b") && covers("+/b", "x/b"));
        assert!(!covers("a/+", "a/#") && !covers("a/+", "a") && !covers("a/b", "a/+"));
        assert!(overlaps("a/#", "+/b") && overlaps("a/+", "+/c") && overlaps("#", "a"));
        assert!(!overlaps("a/b", "a/c") && !overlaps("a/+", "a") && !overlaps("#", "$SYS/x"));
    }
}
