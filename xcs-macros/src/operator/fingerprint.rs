//! A fingerprint of the code `#[xcs::operator]` is on, part of every persistent cache key of the
//! operator: editing the body (a prompt template, say) makes the entries stored by the old body
//! misses by itself.
//!
//! The hash reads the tokens, not the text: comments and formatting are not tokens, and doc
//! comments (which become `#[doc = "…"]` attributes) are skipped wherever they are. Each token
//! contributes its kind and its text (identifiers, literals as written, punctuation characters,
//! delimiters), never its span or spacing, and the commas rustfmt adds or removes (trailing
//! ones, and after a match arm's block) are skipped, so what rustfmt changes does not count. The hash is
//! FNV-1a (64 bits), written out here: a key must mean the same in every build, and std's
//! `DefaultHasher` may change between Rust releases.

use proc_macro2::{Delimiter, TokenStream, TokenTree};

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The fingerprint of `tokens`.
pub(super) fn fingerprint(tokens: TokenStream) -> u64 {
    let mut hash = Fnv(FNV_OFFSET);
    feed(&mut hash, tokens, Delimiter::None, false);
    hash.0
}

/// FNV-1a over bytes.
struct Fnv(u64);

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 ^= u64::from(byte);
            self.0 = self.0.wrapping_mul(FNV_PRIME);
        }
    }

    /// A tag saying what kind of token follows, then its text: `ab` is one identifier, `a b`
    /// two.
    fn token(&mut self, tag: u8, text: &str) {
        self.write(&[tag]);
        self.write(&(text.len() as u64).to_le_bytes());
        self.write(text.as_bytes());
    }
}

/// Keywords a parenthesized tuple can follow (`return (x,)`); after other identifiers,
/// parentheses hold arguments or parameters (`f(x,)`), where a trailing comma means nothing.
const BEFORE_TUPLE: &[&str] = &[
    "as", "break", "const", "dyn", "for", "if", "impl", "in", "let", "match", "mut", "ref",
    "return", "static", "type", "while", "yield",
];

/// Hashes `tokens`, the contents of a group delimited by `delimiter` (`list`: a parenthesized
/// list of arguments or parameters, not a tuple).
fn feed(hash: &mut Fnv, tokens: TokenStream, delimiter: Delimiter, list: bool) {
    let trees: Vec<TokenTree> = tokens.into_iter().collect();
    let commas = trees.iter().filter(|tree| is_punct(tree, ',')).count();
    let mut i = 0;
    while i < trees.len() {
        let tree = &trees[i];
        i += 1;
        match tree {
            TokenTree::Punct(punct) if punct.as_char() == '#' => {
                // `#[doc = "…"]` or `#![doc = "…"]`: a doc comment, skipped.
                let bang = usize::from(trees.get(i).is_some_and(|tree| is_punct(tree, '!')));
                if matches!(trees.get(i + bang), Some(TokenTree::Group(group)) if is_doc(group)) {
                    i += bang + 1;
                } else {
                    hash.token(b'p', "#");
                }
            }
            TokenTree::Punct(punct) if punct.as_char() == ',' => {
                // rustfmt adds or removes a trailing comma when it wraps a list, and removes
                // the comma after a match arm's block: both mean nothing. `(x,)` (a tuple of
                // one) does.
                let trailing = i == trees.len()
                    && !(delimiter == Delimiter::Parenthesis && commas == 1 && !list);
                let after_arm_block = i >= 4
                    && matches!(&trees[i - 2], TokenTree::Group(group) if group.delimiter() == Delimiter::Brace)
                    && is_punct(&trees[i - 3], '>')
                    && is_punct(&trees[i - 4], '=');
                if !trailing && !after_arm_block {
                    hash.token(b'p', ",");
                }
            }
            TokenTree::Punct(punct) => {
                let mut text = [0; 4];
                hash.token(b'p', punct.as_char().encode_utf8(&mut text));
            }
            TokenTree::Ident(ident) => hash.token(b'i', &ident.to_string()),
            TokenTree::Literal(literal) => hash.token(b'l', &literal.to_string()),
            TokenTree::Group(group) => {
                let (open, close) = match group.delimiter() {
                    Delimiter::Parenthesis => ("(", ")"),
                    Delimiter::Brace => ("{", "}"),
                    Delimiter::Bracket => ("[", "]"),
                    Delimiter::None => ("", ""),
                };
                let list = i >= 2
                    && match &trees[i - 2] {
                        TokenTree::Ident(ident) => {
                            !BEFORE_TUPLE.iter().any(|keyword| ident == keyword)
                        }
                        TokenTree::Punct(punct) => punct.as_char() == '!',
                        TokenTree::Group(group) => group.delimiter() != Delimiter::Brace,
                        TokenTree::Literal(_) => false,
                    };
                hash.token(b'g', open);
                feed(hash, group.stream(), group.delimiter(), list);
                hash.token(b'g', close);
            }
        }
    }
}

fn is_punct(tree: &TokenTree, c: char) -> bool {
    matches!(tree, TokenTree::Punct(punct) if punct.as_char() == c)
}

/// `[doc …]`.
fn is_doc(group: &proc_macro2::Group) -> bool {
    group.delimiter() == Delimiter::Bracket
        && matches!(
            group.stream().into_iter().next(),
            Some(TokenTree::Ident(ident)) if ident == "doc"
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(source: &str) -> u64 {
        fingerprint(source.parse().unwrap())
    }

    #[test]
    fn formatting_and_comments_do_not_count() {
        let plain = of(
            r#"fn ask(q: String, n: u8) -> String { match n { 0 => { q } _ => format!("Answer: {q}") } }"#,
        );
        let formatted = of(r#"
            fn ask(
                q: String, // the question
                n: u8,
            ) -> String {
                /* the prompt */
                match n {
                    0 => {
                        q
                    },
                    /// A doc comment on the arm.
                    _ => format!( "Answer: {q}", ),
                }
            }
        "#);
        assert_eq!(plain, formatted);
        // A tuple of one is not a parenthesized value.
        assert_ne!(of("let t = (1,);"), of("let t = (1);"));
        assert_ne!(of("return (1,);"), of("return (1);"));
        assert_eq!(of("let t = (1, 2,);"), of("let t = (1, 2);"));
        assert_eq!(of("f(1,)"), of("f(1)"));
    }

    #[test]
    fn code_changes_count() {
        let base = of(r#"fn ask(q: String) -> String { format!("Answer: {q}") }"#);
        for edited in [
            r#"fn ask(q: String) -> String { format!("Answer briefly: {q}") }"#,
            r#"fn ask(q: String) -> String { format!("Answer: {q}").trim().into() }"#,
            r#"fn ask(p: String) -> String { format!("Answer: {p}") }"#,
            r#"fn ask(q: String) -> String { format![("Answer: {q}")] }"#,
            r#"fn ask(q: String) -> String { #[allow(unused)] format!("Answer: {q}") }"#,
        ] {
            assert_ne!(base, of(edited), "{edited}");
        }
        // Token boundaries count: `ab` is not `a b`.
        assert_ne!(of("a b"), of("ab"));
        assert_ne!(of("(a) b"), of("(a b)"));
    }

    #[test]
    fn stable_across_builds() {
        // FNV-1a of nothing, and a value fixed once: a change here orphans every stored entry.
        assert_eq!(of(""), FNV_OFFSET);
        assert_eq!(of("fn f() {}"), of("fn f ( ) { }"));
        assert_eq!(of("fn f() {}"), 0x2bc8_a433_a708_a357);
    }
}
