//! A new DKIM key (`eas-relay dkim keygen`): the key file, the config
//! block that loads it and the record that publishes it.

use super::plan::{PlanKey, Record, Section, algorithm_name, describe_key, record};
use super::render::{wrap, zone_line};
use crate::config::{Config, KeyAlgorithm};
use crate::dns::canonical;
use crate::rewrite::keys::{self, DkimKeyError};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Why `dkim keygen` refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum KeygenError {
    #[error(
        "selector `{0}` is already used by a key of the relay (dkim.keys, or the generated default keys); choose another with --selector"
    )]
    SelectorTaken(String),
    #[error("`{0}` is not a valid selector (letters, digits, '-', '_', dot-separated)")]
    BadSelector(String),
    #[error(transparent)]
    Key(#[from] DkimKeyError),
}

/// A key `dkim keygen` wrote.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct NewKey {
    pub(crate) selector: String,
    pub(crate) algorithm: &'static str,
    /// Absolute path of the PEM file (0600).
    pub(crate) key: PathBuf,
    /// The `[[dkim.keys]]` block for the config file.
    pub(crate) config: String,
    /// The TXT record to publish.
    pub(crate) record: Record,
    /// `[[dkim.keys]]` blocks of the generated default keys, which stop
    /// being used once dkim.keys lists any key (empty when they do not
    /// exist or dkim.keys is already in use).
    pub(crate) keep: String,
}

/// `eas-<algo>-<YYYYMMDD>`.
pub(crate) fn default_selector(algorithm: KeyAlgorithm, today: time::Date) -> String {
    format!(
        "eas-{}-{:04}{:02}{:02}",
        algorithm_name(algorithm),
        today.year(),
        u8::from(today.month()),
        today.day()
    )
}

fn config_block(selector: &str, algorithm: KeyAlgorithm, path: &Path) -> String {
    let quoted = |s: &str| toml::Value::String(s.to_string()).to_string();
    format!(
        "[[dkim.keys]]\nselector = {}\nalgorithm = {}\nkey = {}\n",
        quoted(selector),
        quoted(algorithm_name(algorithm)),
        quoted(&path.display().to_string())
    )
}

/// Generates a key (refusing to overwrite a file or to reuse a selector of
/// the relay) into `out`, or data_dir/dkim/<selector>.pem.
pub(crate) fn keygen(
    config: &Config,
    algorithm: KeyAlgorithm,
    selector: Option<String>,
    out: Option<PathBuf>,
    today: time::Date,
) -> Result<NewKey, KeygenError> {
    let selector = selector.unwrap_or_else(|| default_selector(algorithm, today));
    if !crate::address::is_hostname(&selector) || selector.ends_with('.') {
        return Err(KeygenError::BadSelector(selector));
    }
    let defaults = [keys::DEFAULT_ED25519_SELECTOR, keys::DEFAULT_RSA_SELECTOR];
    let taken = if config.dkim.keys.is_empty() {
        defaults.iter().any(|d| d.eq_ignore_ascii_case(&selector))
    } else {
        config
            .dkim
            .keys
            .iter()
            .any(|k| k.selector.eq_ignore_ascii_case(&selector))
    };
    if taken {
        return Err(KeygenError::SelectorTaken(selector));
    }
    let path = out.unwrap_or_else(|| config.data_dir.join("dkim").join(format!("{selector}.pem")));
    let path = std::path::absolute(&path).unwrap_or(path);
    let pair = keys::generate(algorithm, &path)?;
    let dkim_domain = canonical(config.dkim_domain());
    let key = PlanKey {
        selector: selector.clone(),
        algorithm,
        bits: pair.bits(),
        public: pair.public_key().to_vec(),
        record: keys::txt_record(&pair),
        path: path.clone(),
        dkim: true,
    };
    let record = record(
        Section::Relay,
        &format!("{selector}._domainkey.{dkim_domain}"),
        "TXT",
        key.record.clone(),
        format!(
            "DKIM key \"{selector}\" ({}): receivers fetch the public key of the relay's \
             signatures (d={dkim_domain}) here.",
            describe_key(algorithm, key.bits)
        ),
    );
    let keep = if config.dkim.keys.is_empty() {
        [
            (keys::DEFAULT_ED25519_SELECTOR, KeyAlgorithm::Ed25519),
            (keys::DEFAULT_RSA_SELECTOR, KeyAlgorithm::Rsa),
        ]
        .iter()
        .map(|(s, a)| (s, a, config.data_dir.join("dkim").join(format!("{s}.pem"))))
        .filter(|(_, _, p)| p.exists())
        .map(|(s, a, p)| config_block(s, *a, &std::path::absolute(&p).unwrap_or(p)))
        .collect::<Vec<_>>()
        .join("\n")
    } else {
        String::new()
    };
    Ok(NewKey {
        config: config_block(&selector, algorithm, &path),
        selector,
        algorithm: algorithm_name(algorithm),
        key: path,
        record,
        keep,
    })
}

impl NewKey {
    /// What `dkim keygen` prints.
    pub(crate) fn text(&self) -> String {
        let algorithm = match self.algorithm {
            "rsa" => "an RSA",
            _ => "an Ed25519",
        };
        let mut out = wrap(
            &format!(
                "Generated {algorithm} DKIM key \"{}\" in {} (mode 0600).",
                self.selector,
                self.key.display()
            ),
            "",
        );
        out.push('\n');
        out.push_str("1. Publish its public key in DNS:\n");
        out.push_str(&format!(
            "\n{}\n\nCheck that it resolves: dig +short TXT {}\n\n",
            zone_line(&self.record, 0),
            self.record.name
        ));
        out.push_str(&wrap(
            "2. Then add it to the config file and restart the relay (from then on \
             `eas-relay dns check DOMAIN` checks its record too):",
            "",
        ));
        out.push('\n');
        out.push_str(&self.config);
        if !self.keep.is_empty() {
            out.push('\n');
            out.push_str(&wrap(
                "Note: dkim.keys is empty, so the relay now signs with the keys it generated \
                 itself; once dkim.keys lists a key, only the listed keys are used. To keep \
                 signing with the generated keys, add them too:",
                "",
            ));
            out.push('\n');
            out.push_str(&self.keep);
        }
        out
    }
}
