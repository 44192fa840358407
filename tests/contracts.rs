//! The committed contract artifacts: `abi/` is what `scripts/build-contracts.sh`
//! builds from `contracts/` (byte for byte), and the ABIs keep the deployed
//! contracts' interface (tests/fixtures/*-reference-abi.json): the same
//! functions, selectors and events, plus the alias events of `EAS`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use alloy::json_abi::JsonAbi;
use alloy::primitives::keccak256;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn abi(path: &Path) -> JsonAbi {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str::<JsonAbi>(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Each ABI entry as canonical JSON (sorted keys), as a set.
fn entries(value: &serde_json::Value) -> BTreeSet<String> {
    value
        .as_array()
        .expect("ABI array")
        .iter()
        .map(|e| serde_json::to_string(e).unwrap())
        .collect()
}

fn files(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn abi_dir_is_up_to_date() {
    let out = tempfile::tempdir().unwrap();
    let result = Command::new(root().join("scripts/build-contracts.sh"))
        .arg(out.path())
        .output()
        .expect("run scripts/build-contracts.sh");
    assert!(
        result.status.success(),
        "scripts/build-contracts.sh failed: {}\n{}",
        result.status,
        String::from_utf8_lossy(&result.stderr)
    );
    let committed = root().join("abi");
    let built = files(out.path());
    assert_eq!(
        built,
        [
            "EAS.bin",
            "EAS.json",
            "EASWithoutEvents.bin",
            "EASWithoutEvents.json",
            "TestRegistry.bin",
            "TestRegistry.json"
        ]
        .iter()
        .map(|s| s.to_string())
        .collect::<BTreeSet<_>>()
    );
    assert_eq!(
        files(&committed),
        built,
        "abi/ is stale: run scripts/build-contracts.sh"
    );
    for name in &built {
        let want = std::fs::read(out.path().join(name)).unwrap();
        let have = std::fs::read(committed.join(name)).unwrap();
        assert!(
            want == have,
            "abi/ is stale: run scripts/build-contracts.sh (abi/{name} differs)"
        );
    }
}

#[test]
fn eas_has_every_function_of_the_deployed_eas() {
    let reference = abi(&root().join("tests/fixtures/eas-reference-abi.json"));
    for contract in ["EAS", "EASWithoutEvents"] {
        let ours = abi(&root().join(format!("abi/{contract}.json")));
        let selectors: BTreeSet<_> = ours.functions().map(|f| f.selector()).collect();
        let mut count = 0;
        for f in reference.functions() {
            assert!(
                selectors.contains(&f.selector()),
                "{contract} lacks {} ({})",
                f.signature(),
                f.selector()
            );
            let mine = &ours.function(&f.name).unwrap()[0];
            assert_eq!(mine.outputs, f.outputs, "{contract}.{} outputs", f.name);
            assert_eq!(
                mine.state_mutability, f.state_mutability,
                "{contract}.{} mutability",
                f.name
            );
            count += 1;
        }
        assert_eq!(count, 26, "functions in the reference");
        assert_eq!(
            ours.functions().count(),
            reference.functions().count(),
            "{contract} has functions the deployed EAS lacks"
        );
        // The AccessControl events, and the constructor (dc, maxNumAlias).
        for e in reference.events() {
            let mine = ours
                .event(&e.name)
                .unwrap_or_else(|| panic!("{contract} lacks event {}", e.name));
            assert_eq!(
                mine[0].selector(),
                e.selector(),
                "{contract} event {}",
                e.name
            );
        }
        assert_eq!(
            ours.constructor, reference.constructor,
            "{contract} constructor"
        );
    }
    // Selectors the relay's watcher decodes, spelled out.
    let eas = abi(&root().join("abi/EAS.json"));
    let selector = |name: &str| eas.function(name).unwrap()[0].selector();
    for (name, signature) in [
        ("activate", "activate(string,bytes32,bytes32,string)"),
        ("deactivate", "deactivate(string,bytes32)"),
        ("deactivateAll", "deactivateAll(string)"),
        ("toggleMaintainerAccess", "toggleMaintainerAccess(string)"),
        ("getCommitment", "getCommitment(bytes32,bytes32)"),
        ("verify", "verify(string,bytes32,string,string,bytes)"),
    ] {
        assert_eq!(selector(name).0, keccak256(signature)[..4], "{signature}");
    }
}

#[test]
fn without_events_is_exactly_the_deployed_abi_and_eas_adds_four_events() {
    let reference = entries(&json(&root().join("tests/fixtures/eas-reference-abi.json")));
    let without = entries(&json(&root().join("abi/EASWithoutEvents.json")));
    assert_eq!(
        without, reference,
        "EASWithoutEvents ABI != deployed EAS ABI"
    );

    let with = entries(&json(&root().join("abi/EAS.json")));
    let added: BTreeSet<_> = with.difference(&reference).cloned().collect();
    assert!(reference.is_subset(&with));
    let eas = abi(&root().join("abi/EAS.json"));
    let mut signatures: Vec<String> = eas
        .events()
        .filter(|e| {
            added
                .iter()
                .any(|a| a.contains(&format!("\"name\":\"{}\"", e.name)))
        })
        .map(|e| e.signature())
        .collect();
    signatures.sort();
    assert_eq!(
        signatures,
        [
            "AliasActivated(bytes32,bytes32,bytes32)",
            "AliasDeactivated(bytes32,bytes32)",
            "AllDeactivated(bytes32)",
            "MaintainerAccessToggled(bytes32,bool)",
        ]
    );
    assert_eq!(added.len(), 4);
    let indexed = |name: &str| -> Vec<bool> {
        eas.event(name).unwrap()[0]
            .inputs
            .iter()
            .map(|p| p.indexed)
            .collect()
    };
    assert_eq!(indexed("AliasActivated"), [true, true, false]);
    assert_eq!(indexed("AliasDeactivated"), [true, true]);
    assert_eq!(indexed("AllDeactivated"), [true]);
    assert_eq!(indexed("MaintainerAccessToggled"), [true, false]);
}

#[test]
fn test_registry_speaks_dc() {
    let ours = abi(&root().join("abi/TestRegistry.json"));
    // What EAS calls on DC.
    let idc = abi(&root().join("tests/fixtures/eas-idc-reference-abi.json"));
    for f in idc.functions() {
        let mine = ours
            .function(&f.name)
            .unwrap_or_else(|| panic!("TestRegistry lacks {}", f.signature()));
        assert_eq!(mine[0].selector(), f.selector(), "{}", f.signature());
        assert_eq!(mine[0].outputs, f.outputs, "{}", f.signature());
    }
    // DC's events, same topics and indexing.
    let dc = abi(&root().join("tests/fixtures/dc-reference-abi.json"));
    for name in ["NameRented", "NameRenewed"] {
        let want = &dc.event(name).unwrap()[0];
        let have = &ours
            .event(name)
            .unwrap_or_else(|| panic!("TestRegistry lacks {name}"))[0];
        assert_eq!(have, want, "{name}");
    }
    // The base registrar's ERC-721 Transfer.
    let transfer = &ours.event("Transfer").unwrap()[0];
    assert_eq!(
        transfer.selector(),
        keccak256("Transfer(address,address,uint256)")
    );
    assert!(transfer.inputs.iter().all(|p| p.indexed));
}
