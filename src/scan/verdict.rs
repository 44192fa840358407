//! What rspamd said, and what the relay does with it: rspamd's action, or
//! the action a domain's own thresholds give for the same score; the SMTP
//! reply of a refusal; the `X-Spam-*` header fields of a forwarded message.
//! Everything here reads rspamd's answer as untrusted text: names and
//! messages are reduced to a safe alphabet and a bounded length before
//! they reach a reply, a header or a log.

use crate::reply::Reply;
use crate::store::SpamThresholds;
use std::collections::BTreeMap;

/// Most symbols named in a header field or a log line.
const MAX_SYMBOLS_SHOWN: usize = 20;
/// Longest text of rspamd's shown to a client (its `smtp_message`).
const MAX_MESSAGE: usize = 200;

/// rspamd's actions, least severe first (the order decides which of
/// several recipients' domains wins: the most severe).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Action {
    /// rspamd's `no action`.
    Pass,
    AddHeader,
    RewriteSubject,
    Greylist,
    SoftReject,
    Reject,
}

impl Action {
    /// rspamd's name of an action. A custom action that would drop or hold
    /// mail (`discard`, `quarantine`) is refused here instead: a forwarder
    /// never accepts a message it will not deliver. Any other custom
    /// action only flags the message.
    pub(crate) fn parse(name: &str) -> Action {
        match name.trim().to_ascii_lowercase().as_str() {
            "no action" => Action::Pass,
            "add header" | "add_header" => Action::AddHeader,
            "rewrite subject" | "rewrite_subject" => Action::RewriteSubject,
            "greylist" => Action::Greylist,
            "soft reject" | "soft_reject" => Action::SoftReject,
            "reject" | "discard" | "quarantine" => Action::Reject,
            _ => Action::AddHeader,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Action::Pass => "no action",
            Action::AddHeader => "add header",
            Action::RewriteSubject => "rewrite subject",
            Action::Greylist => "greylist",
            Action::SoftReject => "soft reject",
            Action::Reject => "reject",
        }
    }

    /// The message is forwarded, flagged as spam.
    pub(crate) fn flags(self) -> bool {
        matches!(self, Action::AddHeader | Action::RewriteSubject)
    }
}

/// rspamd's default thresholds (its `actions.conf`), used when its answer
/// does not carry its own.
const DEFAULT_THRESHOLDS: [(Action, f64); 3] = [
    (Action::Reject, 15.0),
    (Action::AddHeader, 6.0),
    (Action::Greylist, 4.0),
];

/// One scan's result as the relay keeps it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Verdict {
    /// rspamd's own action for the message.
    pub(crate) action: Action,
    pub(crate) score: f64,
    /// rspamd's reject threshold (`required_score`).
    pub(crate) required: f64,
    /// rspamd's thresholds per action, as it answered them.
    pub(crate) thresholds: Vec<(Action, f64)>,
    /// Symbol names with their scores, highest score first.
    pub(crate) symbols: Vec<(String, f64)>,
    /// A virus symbol fired, with the names its options gave (the
    /// antivirus module puts the virus name there).
    pub(crate) virus: Option<String>,
    /// rspamd's text for the client, made safe.
    pub(crate) message: Option<String>,
    /// Only a prefix of the message was scanned.
    pub(crate) truncated: bool,
    /// rspamd decided by a rule, not by the score (its `is_skipped`: a
    /// pre-result such as GTUBE stopped the scan).
    pub(crate) forced: bool,
}

impl Verdict {
    /// The action for a message to these domains' recipients: for each
    /// domain, its own thresholds (or rspamd's) applied to the score, and
    /// the most severe of them. An action rspamd forced whatever the
    /// score (a GTUBE pattern, a module's pre-result) stands: a domain
    /// relaxes scores, not rspamd's rules.
    pub(crate) fn action_for<'a>(
        &self,
        domains: impl IntoIterator<Item = Option<&'a SpamThresholds>>,
    ) -> Action {
        let own = self.own_thresholds();
        let by_score = from_score(self.score, &own);
        // A rule of rspamd's (`is_skipped`), or an action more severe than
        // the score gives: kept. A milder one (rspamd's greylist module
        // letting a retry through) is not: the domain's thresholds apply.
        let forced = self.forced || self.action > by_score;
        let mut action = None::<Action>;
        for domain in domains {
            let a = match domain {
                Some(t) if !forced => from_score(self.score, &t.over(&own)),
                _ => self.action,
            };
            action = Some(action.map_or(a, |b| b.max(a)));
        }
        action.unwrap_or(self.action)
    }

    /// rspamd's thresholds, or its defaults for any it did not send.
    fn own_thresholds(&self) -> Vec<(Action, f64)> {
        let mut own = self.thresholds.clone();
        for (action, value) in DEFAULT_THRESHOLDS {
            if !own.iter().any(|(a, _)| *a == action) {
                let value = if action == Action::Reject && self.required > 0.0 {
                    self.required
                } else {
                    value
                };
                own.push((action, value));
            }
        }
        own
    }

    /// Symbol names for a log line or a header: `A(3.50),B(1.00)`.
    pub(crate) fn symbol_list(&self) -> String {
        self.symbols
            .iter()
            .take(MAX_SYMBOLS_SHOWN)
            .map(|(name, score)| format!("{name}({score:.2})"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The refusal for `action`, or None when the message is forwarded.
    pub(crate) fn refusal(&self, action: Action) -> Option<Reply> {
        if let Some(name) = &self.virus {
            return Some(Reply::owned(
                554,
                [5, 7, 1],
                format!("Error: message contains a virus ({name})"),
            ));
        }
        let text = |default: &str| match &self.message {
            Some(m) => format!("Error: {m}"),
            None => format!("Error: {default}"),
        };
        match action {
            Action::Reject => Some(Reply::owned(
                550,
                [5, 7, 1],
                text("message refused as spam"),
            )),
            // Not `greylist`: without rspamd's greylist module (which turns
            // its greylisting into `soft reject` itself) nothing would ever
            // let the retry through; rspamd's own milter accepts it too.
            Action::SoftReject => Some(Reply::owned(
                451,
                [4, 7, 1],
                text("message deferred, try again later"),
            )),
            _ => None,
        }
    }

    /// `X-Spam-*` fields for a forwarded message (CRLF-terminated), in
    /// the SpamAssassin form that mail filters (Sieve, clients) know.
    pub(crate) fn header_fields(&self, action: Action, all: bool) -> String {
        let spam = action.flags();
        if !spam && !all {
            return String::new();
        }
        let yes = if spam { "Yes" } else { "No" };
        let mut fields = format!(
            "X-Spam-Flag: {}\r\nX-Spam-Score: {:.2}\r\nX-Spam-Action: {}\r\nX-Spam-Status: {yes}, score={:.2} required={:.2}",
            if spam { "YES" } else { "NO" },
            self.score,
            action.as_str(),
            self.score,
            self.required,
        );
        // Folded, one symbol per piece: header lines stay short.
        let names: Vec<&str> = self
            .symbols
            .iter()
            .take(MAX_SYMBOLS_SHOWN)
            .map(|(n, _)| n.as_str())
            .collect();
        if !names.is_empty() {
            fields.push_str("\r\n\ttests=");
            fields.push_str(&names.join(",\r\n\t"));
        }
        if self.truncated {
            fields.push_str("\r\n\t(only the start of the message was scanned)");
        }
        fields.push_str("\r\n");
        fields
    }
}

/// The action whose threshold is the highest the score reaches (rspamd's
/// rule: greylist from 4, add header from 6, reject from 15); of equal
/// thresholds, the most severe.
fn from_score(score: f64, thresholds: &[(Action, f64)]) -> Action {
    thresholds
        .iter()
        .filter(|(_, t)| score >= *t)
        .max_by(|(a1, t1), (a2, t2)| t1.total_cmp(t2).then(a1.cmp(a2)))
        .map_or(Action::Pass, |(a, _)| *a)
}

impl SpamThresholds {
    /// These thresholds, each missing one taken from `base` — but never
    /// above one the domain set for a more severe action: a domain that
    /// says "reject from 5" means it, even where rspamd flags from 6.
    fn over(&self, base: &[(Action, f64)]) -> Vec<(Action, f64)> {
        let mut out: Vec<(Action, f64)> = base
            .iter()
            .filter(|(a, _)| !matches!(a, Action::Reject | Action::AddHeader | Action::Greylist))
            .copied()
            .collect();
        let mut ceiling = f64::INFINITY;
        for (action, own) in [
            (Action::Reject, self.reject),
            (Action::AddHeader, self.add_header),
            (Action::Greylist, None),
        ] {
            let inherited = base.iter().find(|(a, _)| *a == action).map(|(_, t)| *t);
            let value = match own {
                Some(t) => Some(t),
                None => inherited.map(|t| t.min(ceiling)),
            };
            if let Some(t) = value {
                ceiling = ceiling.min(t);
                out.push((action, t));
            }
        }
        out
    }
}

/// `header` without the spam verdicts it arrived with (`X-Spam*`,
/// `X-Spamd-*` fields): only the relay's own verdict may reach the
/// destination's filters. None when there are none.
pub(crate) fn strip_spam_fields(header: &[u8]) -> Option<Vec<u8>> {
    crate::rewrite::sign::without_fields(header, |f| {
        f.name
            .get(..6)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"x-spam"))
    })
}

/// A symbol or virus name from rspamd: letters, digits and `_.-` only,
/// at most 64 characters (None when nothing is left).
pub(crate) fn clean_name(name: &str) -> Option<String> {
    let clean: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        .take(64)
        .collect();
    (!clean.is_empty()).then_some(clean)
}

/// rspamd's text for the client: printable ASCII, one line, bounded.
pub(crate) fn clean_message(text: &str) -> Option<String> {
    let clean: String = text
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { ' ' })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let clean: String = clean.chars().take(MAX_MESSAGE).collect();
    (!clean.is_empty()).then_some(clean)
}

/// rspamd's `thresholds` object as actions, for the ones the relay knows
/// (numbers only).
pub(crate) fn thresholds(raw: &BTreeMap<String, serde_json::Value>) -> Vec<(Action, f64)> {
    raw.iter()
        .filter_map(|(name, t)| Some((name, t.as_f64().filter(|t| t.is_finite())?)))
        .filter_map(|(name, t)| {
            let action = Action::parse(name);
            (action.as_str() == name.trim().to_ascii_lowercase().replace('_', " "))
                .then_some((action, t))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(action: Action, score: f64) -> Verdict {
        Verdict {
            action,
            score,
            required: 15.0,
            thresholds: DEFAULT_THRESHOLDS.to_vec(),
            symbols: vec![("BAYES_SPAM".into(), 5.0), ("MISSING_DATE".into(), 1.0)],
            virus: None,
            message: None,
            truncated: false,
            forced: false,
        }
    }

    fn domain(reject: Option<f64>, add_header: Option<f64>) -> SpamThresholds {
        SpamThresholds { reject, add_header }
    }

    #[test]
    fn a_domain_may_tighten_or_relax_the_score_thresholds() {
        let v = verdict(Action::AddHeader, 7.0);
        assert_eq!(v.action_for([None]), Action::AddHeader);
        let strict = domain(Some(6.5), None);
        assert_eq!(v.action_for([Some(&strict)]), Action::Reject);
        // Below rspamd's add-header threshold: still "reject from 5".
        let stricter = domain(Some(5.0), None);
        assert_eq!(v.action_for([Some(&stricter)]), Action::Reject);
        assert_eq!(
            verdict(Action::Greylist, 4.5).action_for([Some(&stricter)]),
            Action::Greylist
        );
        // Relaxed: below its own add-header threshold the message is only
        // in rspamd's greylist band, which is forwarded unflagged.
        let lax = domain(Some(50.0), Some(40.0));
        let action = v.action_for([Some(&lax)]);
        assert_eq!(action, Action::Greylist);
        assert!(v.refusal(action).is_none() && !action.flags());
        // Several domains: the strictest wins.
        assert_eq!(v.action_for([Some(&lax), Some(&strict)]), Action::Reject);
    }

    #[test]
    fn an_action_rspamd_forced_is_not_relaxed_by_a_domain() {
        // GTUBE: reject whatever the score.
        let v = verdict(Action::Reject, 0.0);
        let lax = domain(Some(100.0), Some(100.0));
        assert_eq!(v.action_for([Some(&lax)]), Action::Reject);
        // rspamd 3.4 gives GTUBE the reject threshold as its score: only
        // `is_skipped` tells it from a score-based reject.
        let mut v = verdict(Action::Reject, 15.0);
        assert_eq!(v.action_for([Some(&lax)]), Action::Greylist);
        v.forced = true;
        assert_eq!(v.action_for([Some(&lax)]), Action::Reject);
    }

    #[test]
    fn a_milder_action_than_the_score_gives_is_not_forced() {
        // rspamd's greylist module lets a retry through as "no action"
        // with a score of 5: a domain rejecting from 4.5 still rejects.
        let v = verdict(Action::Pass, 5.0);
        let strict = domain(Some(4.5), None);
        assert_eq!(v.action_for([Some(&strict)]), Action::Reject);
        // And a greylist verdict is never refused: nothing would let the
        // retry through.
        assert!(
            verdict(Action::Greylist, 5.0)
                .refusal(Action::Greylist)
                .is_none()
        );
    }

    #[test]
    fn refusals_use_rspamds_text_made_safe_and_name_a_virus() {
        let mut v = verdict(Action::Reject, 20.0);
        assert_eq!(v.refusal(Action::Reject).unwrap().code, 550);
        assert!(v.refusal(Action::Greylist).is_none());
        assert_eq!(v.refusal(Action::SoftReject).unwrap().code, 451);
        assert!(v.refusal(Action::AddHeader).is_none());
        v.message = clean_message("Gtube\r\n550 pattern\u{7}\u{212A}");
        let text = v.refusal(Action::Reject).unwrap().text.to_string();
        assert_eq!(text, "Error: Gtube 550 pattern");
        v.virus = clean_name("Eicar-Test-Signature\r\n");
        let reply = v.refusal(Action::Pass).unwrap();
        assert_eq!(reply.code, 554);
        assert!(reply.text.contains("Eicar-Test-Signature"));
    }

    #[test]
    fn flagged_messages_get_spamassassin_style_fields() {
        let v = verdict(Action::AddHeader, 7.25);
        let fields = v.header_fields(Action::AddHeader, false);
        assert!(fields.starts_with("X-Spam-Flag: YES\r\n"), "{fields}");
        assert!(fields.contains("X-Spam-Status: Yes, score=7.25 required=15.00"));
        assert!(fields.contains("tests=BAYES_SPAM,\r\n\tMISSING_DATE\r\n"));
        assert!(fields.ends_with("\r\n"));
        assert_eq!(v.header_fields(Action::Pass, false), "");
        assert!(
            v.header_fields(Action::Pass, true)
                .contains("X-Spam-Flag: NO")
        );
    }

    #[test]
    fn a_senders_own_spam_verdict_is_removed() {
        let header = b"From: a@b.test\r\nX-Spam-Flag: NO\r\nx-spam-status: No,\r\n score=-5\r\nX-Spamd-Result: default: False\r\nX-Spammer: kept? no\r\nSubject: hi\r\n\r\n";
        let out = strip_spam_fields(header).unwrap();
        assert_eq!(out, b"From: a@b.test\r\nSubject: hi\r\n\r\n".to_vec());
        assert!(strip_spam_fields(b"From: a@b.test\r\nX-Spa: 1\r\n\r\n").is_none());
    }

    #[test]
    fn unknown_actions_flag_and_dropping_actions_refuse() {
        assert_eq!(Action::parse("discard"), Action::Reject);
        assert_eq!(Action::parse("quarantine"), Action::Reject);
        assert_eq!(Action::parse("something new"), Action::AddHeader);
        assert_eq!(Action::parse("No Action"), Action::Pass);
        let raw = BTreeMap::from([
            ("reject".to_string(), serde_json::json!(15.0)),
            ("add header".to_string(), serde_json::json!(6.0)),
            ("custom".to_string(), serde_json::json!(1.0)),
            ("greylist".to_string(), serde_json::json!("nan")),
        ]);
        assert_eq!(
            thresholds(&raw),
            vec![(Action::AddHeader, 6.0), (Action::Reject, 15.0)]
        );
    }
}
