//! The C library stays inside: no `ssh2` or `libssh2_sys` type appears in
//! the public API. This test reads the crate's source (every file under
//! `src/`) and fails on any public item that names one: a `pub fn`
//! signature, a `pub` field, an enum variant's field, a `pub use`, a `pub
//! type`, `const` or `static`, or a trait impl on a public type (`impl
//! From<ssh2::X> for Metadata`), whether written `ssh2::X` or with a name
//! imported from `ssh2`.
//!
//! It reads the source rather than rustdoc's output, so it needs no nightly
//! compiler and no second build; the checker is tested on snippets at the
//! end, so it can be seen to fail.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use quote::ToTokens;
use syn::visit::Visit;

/// The crates whose types must not leak.
const HIDDEN: [&str; 2] = ["ssh2", "libssh2_sys"];

#[test]
fn no_ssh2_type_in_the_public_api() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = rust_files(&root);
    assert!(files.len() > 20, "found only {} source files", files.len());
    let sources: Vec<(PathBuf, syn::File)> = files
        .into_iter()
        .map(|path| {
            let text = fs::read_to_string(&path).expect("read source");
            let file = syn::parse_file(&text)
                .unwrap_or_else(|e| panic!("{}: cannot parse: {e}", path.display()));
            (path, file)
        })
        .collect();
    let public_types = public_type_names(sources.iter().map(|(_, f)| f));
    assert!(public_types.contains("Session") && public_types.contains("Metadata"));
    let mut leaks = Vec::new();
    for (path, file) in &sources {
        for leak in leaks_in(file, &public_types) {
            let shown = path.strip_prefix(&root).unwrap_or(path);
            leaks.push(format!("src/{}: {leak}", shown.display()));
        }
    }
    assert!(
        leaks.is_empty(),
        "ssh2 types in the public API:\n{}",
        leaks.join("\n")
    );
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn is_pub(vis: &syn::Visibility) -> bool {
    matches!(vis, syn::Visibility::Public(_))
}

/// Names of the `pub` structs, enums, traits and type aliases in `files`.
fn public_type_names<'a>(files: impl Iterator<Item = &'a syn::File>) -> HashSet<String> {
    #[derive(Default)]
    struct Names(HashSet<String>);
    impl Names {
        fn add(&mut self, vis: &syn::Visibility, ident: &syn::Ident) {
            if is_pub(vis) {
                self.0.insert(ident.to_string());
            }
        }
    }
    impl<'ast> Visit<'ast> for Names {
        fn visit_item_struct(&mut self, i: &'ast syn::ItemStruct) {
            self.add(&i.vis, &i.ident);
        }
        fn visit_item_enum(&mut self, i: &'ast syn::ItemEnum) {
            self.add(&i.vis, &i.ident);
        }
        fn visit_item_trait(&mut self, i: &'ast syn::ItemTrait) {
            self.add(&i.vis, &i.ident);
        }
        fn visit_item_type(&mut self, i: &'ast syn::ItemType) {
            self.add(&i.vis, &i.ident);
        }
    }
    let mut names = Names::default();
    for file in files {
        names.visit_file(file);
    }
    names.0
}

/// What in `file` exposes a hidden crate's type.
fn leaks_in(file: &syn::File, public_types: &HashSet<String>) -> Vec<String> {
    let mut v = Leaks {
        imported: imported_names(file),
        public_types,
        leaks: Vec::new(),
    };
    v.visit_file(file);
    v.leaks
}

/// Names a file imports from a hidden crate (`use ssh2::{Channel, Session as S}`).
fn imported_names(file: &syn::File) -> HashSet<String> {
    fn walk(tree: &syn::UseTree, hidden: bool, out: &mut HashSet<String>) {
        match tree {
            syn::UseTree::Path(p) => {
                let hidden = hidden || HIDDEN.contains(&p.ident.to_string().as_str());
                walk(&p.tree, hidden, out);
            }
            syn::UseTree::Name(n) if hidden => {
                out.insert(n.ident.to_string());
            }
            syn::UseTree::Rename(r) if hidden => {
                out.insert(r.rename.to_string());
            }
            syn::UseTree::Group(g) => g.items.iter().for_each(|t| walk(t, hidden, out)),
            _ => {}
        }
    }
    let mut out = HashSet::new();
    struct Uses<'a>(&'a mut HashSet<String>);
    impl<'ast> Visit<'ast> for Uses<'_> {
        fn visit_item_use(&mut self, i: &'ast syn::ItemUse) {
            walk(&i.tree, false, self.0);
        }
    }
    Uses(&mut out).visit_file(file);
    out
}

struct Leaks<'a> {
    imported: HashSet<String>,
    public_types: &'a HashSet<String>,
    leaks: Vec<String>,
}

impl Leaks<'_> {
    /// Whether `tokens` name a hidden crate or a name imported from one.
    fn names_hidden(&self, tokens: &impl ToTokens) -> bool {
        let mut found = false;
        for tree in tokens.to_token_stream() {
            found |= self.tree_names_hidden(&tree);
        }
        found
    }

    fn tree_names_hidden(&self, tree: &proc_macro2::TokenTree) -> bool {
        match tree {
            proc_macro2::TokenTree::Ident(i) => {
                let name = i.to_string();
                HIDDEN.contains(&name.as_str()) || self.imported.contains(&name)
            }
            proc_macro2::TokenTree::Group(g) => {
                g.stream().into_iter().any(|t| self.tree_names_hidden(&t))
            }
            _ => false,
        }
    }

    fn check(&mut self, what: String, tokens: &impl ToTokens) {
        if self.names_hidden(tokens) {
            self.leaks
                .push(format!("{what}: {}", tokens.to_token_stream()));
        }
    }

    fn is_public_type(&self, ty: &syn::Type) -> bool {
        match ty {
            syn::Type::Path(p) => p
                .path
                .segments
                .last()
                .is_some_and(|s| self.public_types.contains(&s.ident.to_string())),
            syn::Type::Reference(r) => self.is_public_type(&r.elem),
            _ => false,
        }
    }
}

impl<'ast> Visit<'ast> for Leaks<'_> {
    fn visit_item_fn(&mut self, i: &'ast syn::ItemFn) {
        if is_pub(&i.vis) {
            self.check(format!("pub fn {}", i.sig.ident), &i.sig);
        }
    }

    fn visit_item_struct(&mut self, i: &'ast syn::ItemStruct) {
        if is_pub(&i.vis) {
            self.check(format!("pub struct {}", i.ident), &i.generics);
            for field in i.fields.iter().filter(|f| is_pub(&f.vis)) {
                self.check(format!("pub field of {}", i.ident), &field.ty);
            }
        }
    }

    fn visit_item_enum(&mut self, i: &'ast syn::ItemEnum) {
        if is_pub(&i.vis) {
            for variant in &i.variants {
                for field in &variant.fields {
                    self.check(format!("{}::{}", i.ident, variant.ident), &field.ty);
                }
            }
        }
    }

    fn visit_item_type(&mut self, i: &'ast syn::ItemType) {
        if is_pub(&i.vis) {
            self.check(format!("pub type {}", i.ident), &i.ty);
        }
    }

    fn visit_item_const(&mut self, i: &'ast syn::ItemConst) {
        if is_pub(&i.vis) {
            self.check(format!("pub const {}", i.ident), &i.ty);
        }
    }

    fn visit_item_static(&mut self, i: &'ast syn::ItemStatic) {
        if is_pub(&i.vis) {
            self.check(format!("pub static {}", i.ident), &i.ty);
        }
    }

    fn visit_item_use(&mut self, i: &'ast syn::ItemUse) {
        if is_pub(&i.vis) {
            self.check("pub use".to_string(), &i.tree);
        }
    }

    fn visit_item_trait(&mut self, i: &'ast syn::ItemTrait) {
        if is_pub(&i.vis) {
            self.check(format!("pub trait {}", i.ident), &i.supertraits);
            for item in &i.items {
                if let syn::TraitItem::Fn(f) = item {
                    self.check(format!("{}::{}", i.ident, f.sig.ident), &f.sig);
                }
            }
        }
    }

    fn visit_item_impl(&mut self, i: &'ast syn::ItemImpl) {
        if !self.is_public_type(&i.self_ty) {
            return;
        }
        let ty = i.self_ty.to_token_stream().to_string();
        match &i.trait_ {
            // A trait impl is as public as its type: all of it counts.
            Some((_, path, _)) => {
                let what = format!("impl {} for {ty}", path.to_token_stream());
                self.check(what.clone(), path);
                for item in &i.items {
                    match item {
                        syn::ImplItem::Fn(f) => self.check(what.clone(), &f.sig),
                        syn::ImplItem::Type(t) => self.check(what.clone(), &t.ty),
                        _ => {}
                    }
                }
            }
            None => {
                for item in &i.items {
                    match item {
                        syn::ImplItem::Fn(f) if is_pub(&f.vis) => {
                            self.check(format!("{ty}::{}", f.sig.ident), &f.sig);
                        }
                        syn::ImplItem::Const(c) if is_pub(&c.vis) => {
                            self.check(format!("{ty}::{}", c.ident), &c.ty);
                        }
                        _ => {}
                    }
                }
            }
        }
    }
}

/// The checker itself: each way a type can leak is found, and what is
/// crate-private is not reported.
#[test]
fn the_checker_finds_leaks() {
    let leaky = [
        "pub struct Metadata; impl From<ssh2::FileStat> for Metadata { fn from(s: ssh2::FileStat) -> Self { Metadata } }",
        "pub struct S; impl S { pub fn session(&self) -> &ssh2::Session { todo!() } }",
        "use ssh2::{Channel as Ch}; pub struct S; impl S { pub fn ch(&self) -> Ch { todo!() } }",
        "pub struct S { pub raw: libssh2_sys::LIBSSH2_SESSION }",
        "pub enum E { Ssh(Box<ssh2::Error>) }",
        "pub use ssh2::Session;",
        "pub type Raw = ssh2::Sftp;",
        "pub fn open(s: &ssh2::Session) {}",
        "pub struct S<T: ssh2::KeyboardInteractivePrompt>(T);",
    ];
    for src in leaky {
        assert!(!snippet_leaks(src).is_empty(), "not flagged: {src}");
    }
    let fine = [
        "pub(crate) fn raw(s: &ssh2::Session) {}",
        "struct P; impl ssh2::KeyboardInteractivePrompt for P {}",
        "pub struct S { raw: ssh2::Session } impl S { pub(crate) fn raw(&self) -> &ssh2::Session { &self.raw } pub fn port(&self) -> u16 { 22 } }",
        "pub enum E { Other(Option<Box<dyn std::error::Error + Send + Sync>>) }",
    ];
    for src in fine {
        let leaks = snippet_leaks(src);
        assert!(leaks.is_empty(), "wrongly flagged: {src}: {leaks:?}");
    }
}

fn snippet_leaks(src: &str) -> Vec<String> {
    let file = syn::parse_file(src).expect("snippet parses");
    leaks_in(&file, &public_type_names([&file].into_iter()))
}
