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

fn spf_count(apex: &str) -> usize {
    value(apex)["txt"]
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
        changes(None, Some(&huge), &desired()),
        Err(LabelError::TooLarge { .. })
    ));
}

#[test]
fn spf_recognition() {
    assert!(is_spf("v=spf1"));
    assert!(is_spf(" V=SPF1 -all"));
    assert!(!is_spf("v=spf10 -all"));
    assert!(!is_spf("v=spf"));
    assert!(!is_spf("spf v=spf1"));
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
    (
        prop::collection::btree_map("[a-z]{1,5}", json_value(), 0..4),
        prop::option::of(txt),
        prop::option::of(mx),
    )
        .prop_map(|(extra, txt, mx)| {
            let mut o: serde_json::Map<String, Value> = extra.into_iter().collect();
            if let Some(t) = txt {
                o.insert("txt".into(), Value::Array(t));
            }
            if let Some(m) = mx {
                o.insert("mx".into(), Value::Array(m));
            }
            Value::Object(o).to_string()
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
        for (before, after) in [(apex.as_deref(), Some(after_apex.as_str())), (dmarc.as_deref(), after_dmarc.as_deref())] {
            let (Some(before), Some(after)) = (before, after) else { continue };
            let (before, after) = (value(before), value(after));
            for (k, v) in before.as_object().unwrap() {
                if k != "mx" && k != "txt" {
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
