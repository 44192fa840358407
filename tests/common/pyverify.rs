//! Independent DKIM/ARC verification (and sender-side DKIM signing) with
//! Debian's python3-dkim, through `tests/tools/verify.py`. Uses
//! `/usr/bin/python3` explicitly: a pyenv python on PATH does not see
//! Debian's packages.

use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

const PYTHON: &str = "/usr/bin/python3";

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/tools/verify.py")
}

fn run(args: &[&str], message: &[u8]) -> Value {
    let mut child = Command::new(PYTHON)
        .arg(script())
        .args(args)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run /usr/bin/python3 (Debian python3-dkim and python3-nacl are needed)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(message)
        .expect("write message to verify.py");
    let out = child.wait_with_output().expect("verify.py output");
    assert!(
        out.status.success(),
        "verify.py {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "verify.py printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// One DKIM-Signature as python-dkim judged it.
#[derive(Debug, Clone)]
pub struct DkimCheck {
    pub d: String,
    pub s: String,
    pub a: String,
    pub valid: bool,
    pub error: Option<String>,
}

/// One ARC set as python-dkim judged it.
#[derive(Debug, Clone)]
pub struct ArcInstance {
    pub instance: u64,
    pub cv: String,
    pub ams_valid: bool,
    pub as_valid: bool,
    pub domain: String,
}

#[derive(Debug, Clone)]
pub struct Report {
    /// Every DKIM-Signature, topmost first.
    pub dkim: Vec<DkimCheck>,
    /// "pass", "fail", "none", or None (chain ended by an earlier cv=fail).
    pub arc_cv: Option<String>,
    pub arc_reason: String,
    /// Newest instance first.
    pub arc: Vec<ArcInstance>,
}

impl Report {
    /// The signature of `d=domain; s=selector`.
    pub fn dkim(&self, domain: &str, selector: &str) -> &DkimCheck {
        self.dkim
            .iter()
            .find(|c| c.d == domain && c.s == selector)
            .unwrap_or_else(|| panic!("no DKIM signature d={domain} s={selector}: {self:?}"))
    }
}

fn str_of(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// Verifies every DKIM signature and the ARC chain of `message`, resolving
/// keys from `records` (owner name → TXT value).
pub fn verify(records: &BTreeMap<String, String>, message: &[u8]) -> Report {
    let mut file = tempfile::NamedTempFile::new().expect("records file");
    serde_json::to_writer(&mut file, records).expect("write records");
    file.flush().unwrap();
    let path = file.path().to_str().unwrap().to_string();
    let out = run(&["verify", &path], message);
    let dkim = out["dkim"]
        .as_array()
        .expect("dkim array")
        .iter()
        .map(|c| DkimCheck {
            d: str_of(&c["d"]),
            s: str_of(&c["s"]),
            a: str_of(&c["a"]),
            valid: c["valid"].as_bool().unwrap_or(false),
            error: c["error"].as_str().map(String::from),
        })
        .collect();
    let arc = &out["arc"];
    Report {
        dkim,
        arc_cv: arc["cv"].as_str().map(String::from),
        arc_reason: str_of(&arc["reason"]),
        arc: arc["instances"]
            .as_array()
            .expect("arc instances")
            .iter()
            .map(|i| ArcInstance {
                instance: i["instance"].as_u64().unwrap_or(0),
                cv: str_of(&i["cv"]),
                ams_valid: i["ams_valid"].as_bool().unwrap_or(false),
                as_valid: i["as_valid"].as_bool().unwrap_or(false),
                domain: str_of(&i["as_domain"]),
            })
            .collect(),
    }
}

/// A sender's DKIM signature made by python-dkim with a fresh Ed25519 key.
pub struct SenderSignature {
    /// `DKIM-Signature: ...` CRLF-terminated, to put on top of the message.
    pub header: String,
    /// Where its key is published, and the TXT value.
    pub name: String,
    pub txt: String,
}

/// Signs `message` as `domain` would (h = from:to:subject:date:message-id),
/// with canonicalization `canon` such as "simple/simple".
pub fn sign(domain: &str, selector: &str, canon: &str, message: &[u8]) -> SenderSignature {
    let out = run(&["sign", domain, selector, canon], message);
    SenderSignature {
        header: str_of(&out["header"]),
        name: str_of(&out["name"]),
        txt: str_of(&out["txt"]),
    }
}
