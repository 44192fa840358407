use super::*;
use proptest::prelude::*;

const OLD_SPF: &str = "v=spf1 include:spf.improvmx.com ~all";

fn desired() -> Desired {
    Desired {
        mx: vec!["mx1.relay.example.".into(), "mx2.relay.example.".into()],
        keep_mx: vec!["backup.owner.example".into()],
        ttl: 300,
        spf: Some("v=spf1 -all".into()),
        dmarc: Some("v=DMARC1; p=reject".into()),
    }
}

fn value(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

fn apply(apex: Option<&str>, dmarc: Option<&str>) -> (Option<String>, Option<String>) {
    let mut apex = apex.map(str::to_string);
    let mut dmarc = dmarc.map(str::to_string);
    for c in changes(apex.as_deref(), dmarc.as_deref(), &desired()).unwrap() {
        match c.label {
            APEX => apex = c.after,
            _ => dmarc = c.after,
        }
    }
    (apex, dmarc)
}

/// A field as CoreDNS reads it (Go: case-insensitive keys, last wins).
fn go_field(label: &str, key: &str) -> Value {
    RawObject::parse(APEX, Some(label))
        .unwrap()
        .get(key)
        .map(|v| value(v.get()))
        .unwrap_or(Value::Null)
}

/// The keys of a label's raw text, duplicates and all.
fn raw_keys(label: &str) -> Vec<String> {
    let obj: RawObject = serde_json::from_str(label).unwrap();
    obj.0.into_iter().map(|(k, _)| k).collect()
}

fn spf_count(apex: &str) -> usize {
    go_field(apex, "txt")
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|e| e["text"].as_str().is_some_and(is_spf))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn an_empty_zone_gets_mx_spf_and_dmarc_in_the_plugin_shape() {
    let todo = changes(None, None, &desired()).unwrap();
    assert_eq!(todo.len(), 2);
    assert_eq!(todo[0].label, "@");
    assert_eq!(todo[0].before, None);
    assert_eq!(
        todo[0].after.as_deref().unwrap(),
        r#"{"mx":[{"host":"mx1.relay.example.","preference":10,"ttl":300},{"host":"mx2.relay.example.","preference":20,"ttl":300}],"txt":[{"text":"v=spf1 -all","ttl":300}]}"#
    );
    assert_eq!(todo[1].label, "_dmarc");
    assert_eq!(
        todo[1].after.as_deref().unwrap(),
        r#"{"txt":[{"text":"v=DMARC1; p=reject","ttl":300}]}"#
    );
}

#[test]
fn other_fields_keep_their_bytes_and_place() {
    let apex = r#"{"a":[{"ttl":60, "ip":"192.0.2.1"}],"txt":[{"ttl":300,"text":"google-site-verification=x"}],"zzz":{"keep":  [1,2]}}"#;
    let (after, _) = apply(Some(apex), None);
    let after = after.unwrap();
    assert!(
        after.starts_with(r#"{"a":[{"ttl":60, "ip":"192.0.2.1"}],"txt":"#),
        "{after}"
    );
    assert!(after.ends_with(r#""zzz":{"keep":  [1,2]},"mx":[{"host":"mx1.relay.example.","preference":10,"ttl":300},{"host":"mx2.relay.example.","preference":20,"ttl":300}]}"#), "{after}");
    let txt = &value(&after)["txt"];
    assert_eq!(txt[0]["text"], "google-site-verification=x");
    assert_eq!(txt[1]["text"], "v=spf1 -all");
}

#[test]
fn an_old_spf_record_is_replaced_in_place_not_duplicated() {
    let apex = format!(
        r#"{{"txt":[{{"ttl":300,"text":"a"}},{{"ttl":300,"text":"{OLD_SPF}"}},{{"ttl":300,"text":"b"}},{{"ttl":60,"text":"V=SPF1 a -all"}}]}}"#
    );
    let (after, _) = apply(Some(&apex), None);
    let after = after.unwrap();
    let texts: Vec<String> = value(&after)["txt"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(texts, ["a", "v=spf1 -all", "b"]);
    assert_eq!(spf_count(&after), 1);
}

#[test]
fn mx_of_kept_hosts_stay_others_go() {
    let apex = r#"{"mx":[{"ttl":300,"host":"mx1.improvmx.com.","preference":0},{"ttl":600,"host":"BACKUP.owner.example.","preference":50}]}"#;
    let (after, _) = apply(Some(apex), None);
    let mx = value(&after.unwrap())["mx"].clone();
    let hosts: Vec<&str> = mx
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["host"].as_str().unwrap())
        .collect();
    assert_eq!(
        hosts,
        [
            "mx1.relay.example.",
            "mx2.relay.example.",
            "BACKUP.owner.example."
        ]
    );
    assert_eq!(mx[2]["ttl"], 600);
}

#[test]
fn a_second_application_changes_nothing() {
    let (apex, dmarc) = apply(Some(r#"{"a":[{"ttl":300,"ip":"192.0.2.1"}]}"#), None);
    let again = changes(apex.as_deref(), dmarc.as_deref(), &desired()).unwrap();
    assert!(again.is_empty(), "{again:?}");
}

#[test]
fn the_same_records_written_differently_are_left_alone() {
    // Same meaning, other key order and spacing: no write.
    let apex = r#"{ "txt": [ {"ttl":300, "text":"v=spf1 -all"} ],
        "mx": [ {"preference":10,"ttl":300,"host":"mx1.relay.example."},
                {"preference":20,"ttl":300,"host":"mx2.relay.example."} ] }"#;
    let dmarc = r#"{"txt":[{"ttl":3600,"text":"v=DMARC1; p=none; rua=mailto:me@x.example"}]}"#;
    assert!(
        changes(Some(apex), Some(dmarc), &desired())
            .unwrap()
            .is_empty()
    );
}

#[test]
fn an_existing_dmarc_record_or_cname_is_kept() {
    let cname = r#"{"cname":[{"ttl":300,"host":"dmarc.provider.example."}]}"#;
    let (_, dmarc) = apply(None, Some(cname));
    assert_eq!(dmarc.as_deref(), Some(cname));
    let other = r#"{"txt":[{"ttl":300,"text":"not dmarc"}]}"#;
    let (_, dmarc) = apply(None, Some(other));
    let texts = value(&dmarc.unwrap())["txt"].clone();
    assert_eq!(texts[0]["text"], "not dmarc");
    assert_eq!(texts[1]["text"], "v=DMARC1; p=reject");
}

#[test]
fn spf_and_dmarc_off_touch_only_mx() {
    let d = Desired {
        spf: None,
        dmarc: None,
        ..desired()
    };
    let apex = format!(r#"{{"txt":[{{"ttl":300,"text":"{OLD_SPF}"}}]}}"#);
    let todo = changes(Some(&apex), None, &d).unwrap();
    assert_eq!(todo.len(), 1);
    assert_eq!(
        value(todo[0].after.as_deref().unwrap())["txt"][0]["text"],
        OLD_SPF
    );
}

#[test]
fn a_label_that_is_no_object_or_too_large_is_refused() {
    for bad in ["[]", "\"x\"", "null", "{", "", "{\"a\":1}x"] {
        assert!(
            matches!(
                changes(Some(bad), None, &desired()),
                Err(LabelError::NotAnObject { .. })
            ),
            "{bad:?}"
        );
    }
    let huge = format!(r#"{{"x":"{}"}}"#, "a".repeat(MAX_LABEL_BYTES));
    assert!(matches!(
        changes(Some(&huge), None, &desired()),
        Err(LabelError::TooLarge { .. })
    ));
}

#[test]
fn spf_recognition() {
    assert!(is_spf("v=spf1"));
    assert!(is_spf("V=SPF1 -all"));
    // RFC 7208 §4.5: the record begins exactly with the version.
    assert!(!is_spf(" v=spf1 -all"));
    assert!(!is_spf("v=spf10 -all"));
    assert!(!is_spf("v=spf"));
    assert!(!is_spf("spf v=spf1"));
}

const OURS_MX: &str = r#"[{"host":"mx1.relay.example.","preference":10,"ttl":300},{"host":"mx2.relay.example.","preference":20,"ttl":300}]"#;
const OURS_TXT: &str = r#"[{"ttl":300,"text":"v=spf1 -all"}]"#;
const OLD_MX: &str = r#"[{"ttl":300,"host":"mx1.improvmx.com.","preference":0}]"#;

#[test]
fn attacker_hides_old_mx_behind_a_first_duplicate_key() {
    // Go reads the last "mx": DNS serves improvmx; the relay must see it.
    let apex = format!(r#"{{"mx":{OURS_MX},"txt":{OURS_TXT},"mx":{OLD_MX}}}"#);
    let todo = changes(
        Some(&apex),
        Some(r#"{"txt":[{"ttl":1,"text":"v=DMARC1; p=none"}]}"#),
        &desired(),
    )
    .unwrap();
    assert_eq!(todo.len(), 1, "{todo:?}");
    assert_eq!(raw_keys(todo[0].after.as_deref().unwrap()), ["mx", "txt"]);
    assert_eq!(
        go_field(todo[0].after.as_deref().unwrap(), "mx"),
        value(OURS_MX)
    );
}

#[test]
fn attacker_writes_upper_case_mx_and_txt_keys() {
    let apex = format!(
        r#"{{"a":[],"MX":{OLD_MX},"Txt":[{{"ttl":300,"text":"{OLD_SPF}"}}],"txt":[{{"ttl":300,"text":"keep"}}],"TXT":[{{"ttl":300,"text":"{OLD_SPF}"}}]}}"#
    );
    let (after, _) = apply(Some(&apex), None);
    let after = after.unwrap();
    // One lower-case key each, in the place of the first variant.
    assert_eq!(raw_keys(&after), ["a", "mx", "txt"]);
    assert_eq!(go_field(&after, "mx"), value(OURS_MX));
    // The last TXT variant is what DNS served: its SPF record is replaced.
    assert_eq!(go_field(&after, "txt"), value(OURS_TXT));
}

#[test]
fn a_duplicate_whose_last_is_ours_is_what_dns_serves_and_left_alone() {
    let apex = format!(r#"{{"MX":{OLD_MX},"txt":{OURS_TXT},"mx":{OURS_MX}}}"#);
    let dmarc = r#"{"txt":[{"ttl":1,"text":"v=DMARC1; p=none"}]}"#;
    assert_eq!(changes(Some(&apex), Some(dmarc), &desired()).unwrap(), []);
}

#[test]
fn attacker_hides_a_cname_under_an_upper_case_key() {
    let dmarc = r#"{"CNAME":{"ttl":300,"host":"dmarc.provider.example."}}"#;
    let (_, after) = apply(None, Some(dmarc));
    assert_eq!(after.as_deref(), Some(dmarc));
    let apex = r#"{"Cname":{"ttl":300,"host":"elsewhere.example."}}"#;
    assert!(matches!(
        changes(Some(apex), None, &desired()),
        Err(LabelError::Cname { .. })
    ));
}

#[test]
fn attacker_puts_numbers_or_surrogates_serde_cannot_read_and_a_second_run_writes_nothing() {
    for odd in [r#"1e400"#, r#""\ud800""#, r#"{"text":"\udfff x"}"#] {
        let apex = format!(r#"{{"txt":[{odd},{{"ttl":300,"text":"{OLD_SPF}"}}]}}"#);
        let (after, dmarc) = apply(Some(&apex), None);
        let after = after.unwrap();
        assert!(after.contains(odd), "{after}");
        let again = changes(Some(&after), dmarc.as_deref(), &desired()).unwrap();
        assert!(again.is_empty(), "{odd}: {again:?}");
    }
}

#[test]
fn attacker_breaks_dmarc_and_the_apex_is_still_written() {
    for bad in [
        "[]",
        "{",
        "\"x\"",
        &format!(r#"{{"x":"{}"}}"#, "a".repeat(MAX_LABEL_BYTES)),
    ] {
        let todo = changes(None, Some(bad), &desired()).unwrap();
        assert_eq!(todo.len(), 1, "{bad:.20}");
        assert_eq!(todo[0].label, APEX);
    }
}

#[test]
fn attacker_fills_a_label_just_below_the_limit_so_the_edit_crosses_it() {
    // Room for the pad but not for the relay's records: never written.
    let pad = "a".repeat(MAX_LABEL_BYTES - 20);
    let full = format!(r#"{{"x":"{pad}"}}"#);
    assert!(full.len() <= MAX_LABEL_BYTES);
    assert!(matches!(
        changes(Some(&full), None, &desired()),
        Err(LabelError::TooLarge { .. })
    ));
    // At `_dmarc` it is left alone and the apex is still written.
    let todo = changes(None, Some(&full), &desired()).unwrap();
    assert_eq!(todo.len(), 1);
    assert_eq!(todo[0].label, APEX);
}

/// Arbitrary JSON values, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(|n| json!(n)),
        "\\PC{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("v=spf1 include:spf.improvmx.com ~all"),
            Just("v=spf1 -all"),
            Just("v=DMARC1; p=none"),
            Just("mx1.relay.example."),
            Just("backup.owner.example."),
        ]
        .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("text".to_string()),
                    Just("host".to_string()),
                    Just("ttl".to_string()),
                    "[a-z]{1,4}"
                ],
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Labels in the plugin's shape with arbitrary extras and TXT/MX entries.
fn label() -> impl Strategy<Value = String> {
    let txt = prop::collection::vec(
        prop_oneof![
            "\\PC{0,12}".prop_map(|t| json!({"ttl": 300, "text": t})),
            Just(json!({"ttl": 300, "text": OLD_SPF})),
            Just(json!({"ttl": 60, "text": "v=spf1 a -all"})),
            json_value(),
        ],
        0..4,
    );
    let mx = prop::collection::vec(
        prop_oneof![
            Just(json!({"ttl": 300, "host": "mx1.improvmx.com.", "preference": 0})),
            Just(json!({"ttl": 300, "host": "backup.owner.example.", "preference": 5})),
            Just(json!({"ttl": 300, "host": "mx1.relay.example.", "preference": 1})),
            json_value(),
        ],
        0..4,
    );
    // Keys the relay folds come in every spelling and may repeat, in any
    // order: the label is raw text, as an attacker could write it.
    let spelling = |k: &'static str| {
        let mut title = k.to_string();
        title[..1].make_ascii_uppercase();
        prop_oneof![Just(k.to_string()), Just(k.to_uppercase()), Just(title)]
    };
    (
        prop::collection::btree_map(
            "[a-z]{1,5}".prop_filter("not a folded key", |k| !FOLDED.contains(&k.as_str())),
            json_value(),
            0..4,
        ),
        prop::collection::vec((spelling("txt"), txt.prop_map(Value::Array)), 0..3),
        prop::collection::vec((spelling("mx"), mx.prop_map(Value::Array)), 0..3),
    )
        .prop_map(|(extra, txt, mx)| {
            let mut fields: Vec<(String, Value)> = extra.into_iter().collect();
            fields.extend(txt);
            fields.extend(mx);
            fields
        })
        .prop_shuffle()
        .prop_map(|fields| {
            let body: Vec<String> = fields
                .iter()
                .map(|(k, v)| format!("{}:{v}", Value::String(k.clone())))
                .collect();
            format!("{{{}}}", body.join(","))
        })
}

proptest! {
    /// Any text at all: an answer or a refusal, never a panic.
    #[test]
    fn arbitrary_text_never_panics(apex in "\\PC{0,64}", dmarc in "\\PC{0,64}") {
        let _ = changes(Some(&apex), Some(&dmarc), &desired());
    }

    /// Any label: other fields kept, exactly one SPF record, idempotent.
    #[test]
    fn labels_keep_other_fields_get_one_spf_and_settle(
        apex in prop::option::of(label()),
        dmarc in prop::option::of(label()),
        json in json_value(),
    ) {
        // Arbitrary JSON that is not an object is refused, never edited.
        let text = json.to_string();
        if !json.is_object() {
            prop_assert!(changes(Some(&text), None, &desired()).is_err());
        }
        let (after_apex, after_dmarc) = apply(apex.as_deref(), dmarc.as_deref());
        let after_apex = after_apex.unwrap();
        prop_assert_eq!(spf_count(&after_apex), 1);
        // What DNS serves at the apex is the relay's MX, whatever the keys.
        let served = go_field(&after_apex, "mx");
        let served = served.as_array().unwrap();
        prop_assert_eq!(&Value::Array(served[..2].to_vec()), &value(OURS_MX));
        // A label the relay wrote has each folded key once, lower case.
        for label in [Some(after_apex.as_str()), after_dmarc.as_deref()].into_iter().flatten() {
            if Some(label) != apex.as_deref() && Some(label) != dmarc.as_deref() {
                for f in FOLDED {
                    let n = raw_keys(label).iter().filter(|k| k.eq_ignore_ascii_case(f)).count();
                    prop_assert!(n <= 1 && (n == 0 || raw_keys(label).iter().any(|k| k == f)), "{}", label);
                }
            }
        }
        for (before, after) in [(apex.as_deref(), Some(after_apex.as_str())), (dmarc.as_deref(), after_dmarc.as_deref())] {
            let (Some(before), Some(after)) = (before, after) else { continue };
            let (before, after) = (value(before), value(after));
            for (k, v) in before.as_object().unwrap() {
                if !FOLDED.iter().any(|f| k.eq_ignore_ascii_case(f)) {
                    prop_assert_eq!(Some(v), after.get(k));
                }
            }
        }
        let again = changes(Some(&after_apex), after_dmarc.as_deref(), &desired()).unwrap();
        prop_assert!(again.is_empty(), "{:?}", again);
    }
}

/// `apex` and `dmarc` after the removal of the relay's records.
fn removed(apex: Option<&str>, dmarc: Option<&str>) -> (Option<String>, Option<String>) {
    let mut apex = apex.map(str::to_string);
    let mut dmarc = dmarc.map(str::to_string);
    for c in removals(apex.as_deref(), dmarc.as_deref(), &desired()).unwrap() {
        match c.label {
            APEX => apex = c.after,
            _ => dmarc = c.after,
        }
    }
    (apex, dmarc)
}

#[test]
fn removal_of_a_zone_the_relay_filled_deletes_its_labels_and_is_idempotent() {
    let (apex, dmarc) = apply(None, None);
    let (apex, dmarc) = removed(apex.as_deref(), dmarc.as_deref());
    assert_eq!((apex, dmarc), (None, None));
    assert!(removals(None, None, &desired()).unwrap().is_empty());
}

#[test]
fn removal_takes_only_the_relays_records_and_keeps_the_rest_byte_for_byte() {
    let apex = r#"{"a":[{"ttl":60, "ip":"192.0.2.1"}],"mx":[{"ttl":300,"host":"MX1.relay.example","preference":10},{"ttl":300,"host":"backup.owner.example.","preference":50}],"txt":[{"ttl":300,"text":"v=spf1 -all"},{"ttl":300,"text":"keep me"}]}"#;
    // The owner changed the DMARC record: it is the owner's now.
    let dmarc = r#"{"txt":[{"ttl":300,"text":"v=DMARC1; p=none"}]}"#;
    let todo = removals(Some(apex), Some(dmarc), &desired()).unwrap();
    assert_eq!(todo.len(), 1);
    assert_eq!(todo[0].before.as_deref(), Some(apex));
    assert_eq!(
        todo[0].after.as_deref(),
        Some(
            r#"{"a":[{"ttl":60, "ip":"192.0.2.1"}],"mx":[{"ttl":300,"host":"backup.owner.example.","preference":50}],"txt":[{"ttl":300,"text":"keep me"}]}"#
        )
    );
    // An SPF record the owner changed since stays too.
    let apex = r#"{"txt":[{"ttl":300,"text":"v=spf1 include:other.example -all"}]}"#;
    assert!(removals(Some(apex), None, &desired()).unwrap().is_empty());
}
