//! The IDNA2008 rules (RFC 5891 §4.2.3, RFC 5892) that UTS #46 processing
//! does not apply, checked on each Unicode label after UTS #46 has left it
//! unchanged but for case. UTS #46 takes some code points IDNA2008 refuses
//! (U+0640 ARABIC TATWEEL, U+3031 vertical kana repeat marks, old Hangul
//! jamo, Arabic-Indic digits of both kinds mixed in one label) and knows
//! nothing of the contextual rules, so without these checks the relay
//! would accept names no IDNA2008 registry can hold, some of them look-alikes
//! of real ones. The other way round, IDNA2008 allows in context a few code
//! points a plain "letters, marks and digits" rule would refuse (U+00B7
//! between two `l`, ZWNJ/ZWJ after a virama, the Greek keraia, the Hebrew
//! geresh, the katakana middle dot): those are accepted where their rule
//! holds, refused elsewhere.

use super::AddressError;
use icu_properties::props::{
    CanonicalCombiningClass, DefaultIgnorableCodePoint, GeneralCategory, JoiningType,
    NoncharacterCodePoint, Script, WhiteSpace,
};
use icu_properties::{CodePointMapData, CodePointSetData};

/// What RFC 5892 says of a code point on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Pvalid,
    /// Allowed only where its Appendix A rule holds.
    Context,
    Disallowed,
}

/// RFC 5892 §2.6 Exceptions (F), §2.9 OldHangulJamo (I), §2.4
/// IgnorableBlocks (C), and the CONTEXTJ / CONTEXTO code points of
/// Appendix A; None when the general rules decide.
fn special(c: char) -> Option<Status> {
    Some(match u32::from(c) {
        // Exceptions: PVALID.
        0x00DF | 0x03C2 | 0x06FD | 0x06FE | 0x0F0B | 0x3007 => Status::Pvalid,
        // Exceptions: CONTEXTO; CONTEXTJ (ZWNJ, ZWJ); Arabic-Indic digits.
        0x00B7 | 0x0375 | 0x05F3 | 0x05F4 | 0x30FB => Status::Context,
        0x200C | 0x200D => Status::Context,
        0x0660..=0x0669 | 0x06F0..=0x06F9 => Status::Context,
        // Exceptions: DISALLOWED.
        0x0640 | 0x07FA | 0x302E | 0x302F | 0x3031..=0x3035 | 0x303B => Status::Disallowed,
        // OldHangulJamo (Hangul_Syllable_Type L, V, T).
        0x1100..=0x11FF | 0xA960..=0xA97F | 0xD7B0..=0xD7FF => Status::Disallowed,
        // IgnorableBlocks: Combining Diacritical Marks for Symbols, Musical
        // Symbols, Ancient Greek Musical Notation.
        0x20D0..=0x20FF | 0x1D100..=0x1D1FF | 0x1D200..=0x1D24F => Status::Disallowed,
        _ => return None,
    })
}

/// RFC 5892 §2.1–2.3, §2.5: a letter, mark or digit that is not ignorable.
/// (Unstable code points, those NFKC_Casefold changes, and unassigned ones
/// never get here: UTS #46 maps or refuses them, and the label must come
/// out unchanged but for case.)
fn general(c: char) -> Status {
    if CodePointSetData::new::<DefaultIgnorableCodePoint>().contains(c)
        || CodePointSetData::new::<WhiteSpace>().contains(c)
        || CodePointSetData::new::<NoncharacterCodePoint>().contains(c)
    {
        return Status::Disallowed;
    }
    match CodePointMapData::<GeneralCategory>::new().get(c) {
        GeneralCategory::LowercaseLetter
        | GeneralCategory::OtherLetter
        | GeneralCategory::ModifierLetter
        | GeneralCategory::NonspacingMark
        | GeneralCategory::SpacingMark
        | GeneralCategory::DecimalNumber => Status::Pvalid,
        _ => Status::Disallowed,
    }
}

fn status(c: char) -> Status {
    if c.is_ascii() {
        // STD3 rules (already applied): letters, digits, '-'.
        return if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' {
            Status::Pvalid
        } else {
            Status::Disallowed
        };
    }
    special(c).unwrap_or_else(|| general(c))
}

fn is_virama(c: char) -> bool {
    CodePointMapData::<CanonicalCombiningClass>::new().get(c) == CanonicalCombiningClass::Virama
}

fn script(c: char) -> Script {
    CodePointMapData::<Script>::new().get(c)
}

fn joining(c: char) -> JoiningType {
    CodePointMapData::<JoiningType>::new().get(c)
}

/// RFC 5892 Appendix A.1: ZERO WIDTH NON-JOINER after a virama, or
/// between a left- (or dual-) joining and a right- (or dual-) joining
/// character, with only transparent ones between.
fn zwnj_ok(before: &[char], after: &[char]) -> bool {
    if before.last().is_some_and(|&b| is_virama(b)) {
        return true;
    }
    let left = before
        .iter()
        .rev()
        .find(|&&b| joining(b) != JoiningType::Transparent)
        .is_some_and(|&b| {
            matches!(
                joining(b),
                JoiningType::LeftJoining | JoiningType::DualJoining
            )
        });
    let right = after
        .iter()
        .find(|&&a| joining(a) != JoiningType::Transparent)
        .is_some_and(|&a| {
            matches!(
                joining(a),
                JoiningType::RightJoining | JoiningType::DualJoining
            )
        });
    left && right
}

/// Whether the Appendix A rule of the contextual code point at `i` holds.
fn context_ok(label: &[char], i: usize) -> bool {
    let (before, rest) = label.split_at(i);
    let Some((&c, after)) = rest.split_first() else {
        return false;
    };
    let prev = before.last().copied();
    let next = after.first().copied();
    match u32::from(c) {
        // A.1 ZWNJ; A.2 ZWJ: only after a virama.
        0x200C => zwnj_ok(before, after),
        0x200D => prev.is_some_and(is_virama),
        // A.3 MIDDLE DOT: between two 'l' (Catalan "l·l").
        0x00B7 => prev == Some('l') && next == Some('l'),
        // A.4 GREEK LOWER NUMERAL SIGN (keraia): before a Greek character.
        0x0375 => next.is_some_and(|n| script(n) == Script::Greek),
        // A.5, A.6 HEBREW GERESH, GERSHAYIM: after a Hebrew character.
        0x05F3 | 0x05F4 => prev.is_some_and(|p| script(p) == Script::Hebrew),
        // A.7 KATAKANA MIDDLE DOT: in a label with Hiragana, Katakana or Han.
        0x30FB => label
            .iter()
            .any(|&x| matches!(script(x), Script::Hiragana | Script::Katakana | Script::Han)),
        // A.8, A.9: Arabic-Indic digits of one kind only.
        0x0660..=0x0669 => !label
            .iter()
            .any(|&x| ('\u{06F0}'..='\u{06F9}').contains(&x)),
        0x06F0..=0x06F9 => !label
            .iter()
            .any(|&x| ('\u{0660}'..='\u{0669}').contains(&x)),
        _ => false,
    }
}

/// Checks one Unicode label (lower case, NFC, as UTS #46 left it) against
/// IDNA2008: every code point PVALID, or CONTEXTJ / CONTEXTO with its rule
/// holding (else the code point is named), and the hyphen rules of RFC 5891
/// §4.2.3.1 (no leading or trailing hyphen, none in both the 3rd and the
/// 4th position).
pub(super) fn check_label(label: &str) -> Result<(), AddressError> {
    let chars: Vec<char> = label.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let ok = match status(c) {
            Status::Pvalid => true,
            Status::Context => context_ok(&chars, i),
            Status::Disallowed => false,
        };
        if !ok {
            return Err(AddressError::CodePoint(c));
        }
    }
    if chars.first() == Some(&'-')
        || chars.last() == Some(&'-')
        || (chars.get(2) == Some(&'-') && chars.get(3) == Some(&'-'))
    {
        return Err(AddressError::BadLabel);
    }
    Ok(())
}

/// Whether `c` may appear in some label at all (PVALID, or contextual).
pub(super) fn may_appear(c: char) -> bool {
    status(c) != Status::Disallowed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contextual_rules_of_appendix_a() {
        let ok = |l: &str| check_label(l).is_ok();
        // A.3 middle dot: only between two 'l'.
        assert!(ok("col\u{00B7}legi"));
        for bad in ["co\u{00B7}legi", "col\u{00B7}", "\u{00B7}l", "a\u{00B7}b"] {
            assert_eq!(check_label(bad), Err(AddressError::CodePoint('\u{00B7}')));
        }
        // A.4 keraia: before a Greek letter.
        assert!(ok("\u{0375}\u{03B1}\u{03B2}"));
        assert!(!ok("\u{0375}ab"));
        assert!(!ok("\u{03B1}\u{0375}"));
        // A.5/A.6 geresh, gershayim: after a Hebrew letter.
        assert!(ok("\u{05D0}\u{05F3}"));
        assert!(ok("\u{05D0}\u{05F4}\u{05D1}"));
        assert!(!ok("\u{05F3}\u{05D0}"));
        assert!(!ok("a\u{05F4}"));
        // A.7 katakana middle dot: with kana or Han in the label.
        assert!(ok("\u{30A2}\u{30FB}\u{30A4}"));
        assert!(ok("\u{6F22}\u{30FB}"));
        assert!(!ok("ab\u{30FB}cd"));
        // A.8/A.9 Arabic-Indic digits: one kind per label.
        assert!(ok("\u{0628}\u{0661}\u{0662}"));
        assert!(ok("\u{0628}\u{06F1}\u{06F2}"));
        assert!(!ok("\u{0628}\u{0661}\u{06F2}"));
        // A.1/A.2 ZWNJ/ZWJ after a virama (Devanagari KA + VIRAMA).
        assert!(ok("\u{0915}\u{094D}\u{200D}\u{0937}"));
        assert!(ok("\u{0915}\u{094D}\u{200C}\u{0937}"));
        assert!(!ok("pay\u{200D}pal"));
        assert!(!ok("\u{200D}\u{0915}"));
        // ZWNJ between a dual-joining and a right-joining Arabic letter.
        assert!(ok("\u{0628}\u{200C}\u{0627}"));
        assert!(!ok("a\u{200C}b"));
    }

    #[test]
    fn exceptions_and_disallowed_blocks() {
        for good in [
            "stra\u{00DF}e",
            "\u{03C3}\u{03C2}",
            "\u{0F40}\u{0F0B}",
            "\u{3007}",
            "\u{0628}\u{06FD}",
        ] {
            assert_eq!(check_label(good), Ok(()), "{good:?}");
        }
        for (bad, c) in [
            ("\u{0628}\u{0640}\u{0628}", '\u{0640}'), // ARABIC TATWEEL
            ("\u{07CA}\u{07FA}", '\u{07FA}'),         // NKO LAJANYALAN
            ("\u{3042}\u{3031}", '\u{3031}'),         // VERTICAL KANA REPEAT
            ("\u{3042}\u{303B}", '\u{303B}'),         // VERTICAL IDEOGRAPHIC ITERATION
            ("\u{6F22}\u{302E}", '\u{302E}'),         // HANGUL SINGLE DOT TONE MARK
            ("\u{1100}\u{1161}", '\u{1100}'),         // old Hangul jamo
            ("a\u{20D2}", '\u{20D2}'),                // combining mark for symbols
            ("\u{1D165}", '\u{1D165}'),               // musical symbol stem
            ("a\u{2665}", '\u{2665}'),                // a symbol
        ] {
            assert_eq!(check_label(bad), Err(AddressError::CodePoint(c)), "{bad:?}");
        }
        // Hyphens: not first, not last, not in both the 3rd and 4th place.
        for bad in ["-\u{00FC}", "\u{00FC}-", "\u{00FC}b--c"] {
            assert_eq!(check_label(bad), Err(AddressError::BadLabel), "{bad:?}");
        }
        assert!(check_label("\u{00FC}-b-c").is_ok());
    }
}
