//! Reading a .htaccess for `check`: which files it denies to every client,
//! and which handlers it names (how the server will run us).
//!
//! Pure: text in, rules out. Enough of Apache's syntax to tell a real deny
//! rule from a word in a comment: sections (`<IfModule>` read as if their
//! condition held, `<If>` and the like as not certain to apply), `<Files>`
//! wildcards and `<FilesMatch>` regular expressions (a small backtracking
//! matcher, see [`Regex`]), `Require`/`Deny`/`Allow` lines.

use std::cell::Cell;

/// What a .htaccess denies to every client and the handlers it names, as
/// far as `check` can tell: enough of Apache's syntax to see a real rule,
/// not a word in a comment.
#[derive(Debug, Default)]
pub struct Htaccess {
    /// The last `Require all denied` / `Deny from all` (true) or
    /// `Require all granted` / `Allow from all` (false) outside any
    /// `<Files>` block: it applies to the whole folder and below.
    pub all: Option<bool>,
    /// The `<Files>` and `<FilesMatch>` blocks that deny every client.
    pub files: Vec<Regex>,
    /// `AddHandler`, `SetHandler` and `RemoveHandler` lines, in the
    /// file's order, with the section each stands in: the shipped
    /// auto.htaccess names one handler per `<IfModule>`, and the first
    /// whose module is loaded is the one used.
    pub handlers: Vec<Handler>,
    /// The `.fcgi` file each `RewriteRule` rewrites to, if it names one
    /// (the shipped rule's `mysite.fcgi/$1` gives "mysite.fcgi"), in any
    /// section.
    pub rewrites_to: Vec<String>,
    /// `RewriteRule` patterns that start with `^/`: in a .htaccess the path
    /// they see has no leading `/`, so they never match.
    pub slash_patterns: Vec<String>,
    /// What the last `Options` line outside any section does to ExecCGI:
    /// Some(false) for `-ExecCGI`, `None`, or a list without it.
    pub exec_cgi: Option<bool>,
}

/// A handler line, its names lowercased and unquoted.
#[derive(Debug)]
pub struct Handler {
    /// The handler; None for `RemoveHandler`.
    pub name: Option<String>,
    /// The extensions, without their dot; None for `SetHandler` (every file
    /// of its scope).
    pub exts: Option<Vec<String>>,
    /// The `<Files>` or `<FilesMatch>` block it stands in, if any.
    scope: Option<Regex>,
    /// It stands in an `<IfModule>` or another section that may not apply.
    pub conditional: bool,
}

impl Handler {
    /// Does it apply to the file `name`? As mod_mime reads names, every
    /// part after the first dot is an extension ("a.fcgi.bak" has two).
    pub fn applies_to(&self, name: &str) -> bool {
        if self.scope.as_ref().is_some_and(|p| !p.is_match(name)) {
            return false;
        }
        let Some(exts) = &self.exts else {
            return true;
        };
        name.split('.')
            .skip(1)
            .any(|part| exts.iter().any(|e| e.eq_ignore_ascii_case(part)))
    }
}

/// Modules of Apache 2.2 that 2.4 renamed or dropped: a block for one of
/// them never applies on 2.4.
const APACHE_22_ONLY: [&str; 6] = [
    "mod_access.c",
    "access_module",
    "mod_auth.c",
    "auth_module",
    "mod_authz_default.c",
    "authz_default_module",
];

enum Section {
    /// `<IfModule mod_x.c>` (not negated, not a module 2.4 lacks),
    /// `<IfDefine>`, ...: read as if their condition held. The shipped
    /// .htaccess puts its 2.4 rule in `<IfModule mod_authz_core.c>`.
    Transparent,
    /// `<If>`, `<Limit>`, `<IfVersion>`, `<IfModule !mod_x.c>`, anything
    /// else: a deny inside may not hold (on 2.4, for every request), so it
    /// does not count.
    Conditional,
    /// `pattern` is None when check cannot read it: then the block's
    /// denies do not count.
    Files {
        pattern: Option<Regex>,
        denies: bool,
    },
}

impl Htaccess {
    pub fn parse(text: &str) -> Htaccess {
        let mut h = Htaccess::default();
        let mut open: Vec<Section> = Vec::new();
        let mut some_let_in = false;
        for line in logical_lines(text) {
            let line = line.trim();
            // Apache's comments are whole lines whose first non-blank
            // character is '#'; there are no comments after a directive.
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line.starts_with("</") {
                if let Some(Section::Files {
                    pattern: Some(p),
                    denies: true,
                }) = open.pop()
                {
                    h.files.push(p);
                }
                continue;
            }
            if let Some(tag) = line.strip_prefix('<') {
                let tag = tag.strip_suffix('>').unwrap_or(tag).trim();
                let (name, arg) = tag.split_once(char::is_whitespace).unwrap_or((tag, ""));
                let arg = arg.trim();
                open.push(match name.to_ascii_lowercase().as_str() {
                    "files" => Section::Files {
                        pattern: match arg.strip_prefix('~') {
                            Some(re) => Regex::parse(unquote(re.trim())),
                            None => Regex::wildcard(unquote(arg)),
                        },
                        denies: false,
                    },
                    "filesmatch" => Section::Files {
                        pattern: Regex::parse(unquote(arg)),
                        denies: false,
                    },
                    // A module's block counts as if it applied: the shipped
                    // file puts its 2.4 rule in <IfModule mod_authz_core.c>.
                    // Not a negated one (`!mod_authz_core.c` is skipped on
                    // every 2.4), nor one for a module 2.4 no longer has.
                    "ifmodule" => {
                        let module = unquote(arg).to_ascii_lowercase();
                        if module.starts_with('!') || APACHE_22_ONLY.contains(&module.as_str()) {
                            Section::Conditional
                        } else {
                            Section::Transparent
                        }
                    }
                    "ifdefine" | "iffile" | "ifdirective" | "ifsection" | "requireall" => {
                        Section::Transparent
                    }
                    // The shipped files refuse private files only where
                    // they exist (so /report.py still reaches the app);
                    // check asks about files that exist, or will (a log).
                    "if" if unquote(arg).trim() == "-f %{REQUEST_FILENAME}" => Section::Transparent,
                    _ => Section::Conditional,
                });
                continue;
            }
            let mut raw = line.split_whitespace();
            if raw
                .next()
                .is_some_and(|w| w.eq_ignore_ascii_case("rewriterule"))
                && let Some(pattern) = raw.next()
                && let Some(target) = raw.next()
            {
                let pattern = unquote(pattern);
                // `^/?` and `^/*` match with or without the slash.
                if pattern.starts_with("^/")
                    && !pattern.starts_with("^/?")
                    && !pattern.starts_with("^/*")
                {
                    h.slash_patterns.push(pattern.to_owned());
                }
                // The .fcgi file it names, wherever in the path
                // (`mysite.fcgi/$1`, `/blog/mysite.fcgi/$1`).
                if let Some(name) = unquote(target)
                    .split('/')
                    .find(|seg| seg.ends_with(".fcgi"))
                {
                    h.rewrites_to.push(name.to_owned());
                }
                continue;
            }
            let words: Vec<String> = line
                .split_whitespace()
                .map(str::to_ascii_lowercase)
                .collect();
            let words: Vec<&str> = words.iter().map(String::as_str).collect();
            if let ["options", opts @ ..] = words.as_slice() {
                if open.is_empty() {
                    let signed = opts.iter().any(|o| o.starts_with(['+', '-']));
                    h.exec_cgi = if opts.contains(&"-execcgi") {
                        Some(false)
                    } else if opts.contains(&"+execcgi") || opts.contains(&"execcgi") {
                        Some(true)
                    } else if signed {
                        h.exec_cgi
                    } else {
                        // An unsigned list replaces the options: `All`
                        // holds ExecCGI, `None` and any other list do not.
                        Some(opts.contains(&"all"))
                    };
                }
                continue;
            }
            let handler = match words.as_slice() {
                ["addhandler", name, exts @ ..] => Some((Some(*name), Some(exts))),
                ["sethandler", name] => Some((Some(*name), None)),
                ["removehandler", exts @ ..] => Some((None, Some(exts))),
                _ => None,
            };
            if let Some((name, exts)) = handler {
                // The innermost <Files> block's pattern; a block whose
                // pattern check cannot read makes the line not count.
                let files = open.iter().rev().find_map(|s| match s {
                    Section::Files { pattern, .. } => Some(pattern),
                    _ => None,
                });
                if let Some(None) = files {
                    continue;
                }
                h.handlers.push(Handler {
                    name: name.map(|n| unquote(n).to_owned()),
                    exts: exts.map(|e| {
                        e.iter()
                            .map(|x| unquote(x).trim_start_matches('.').to_owned())
                            .collect()
                    }),
                    scope: files.cloned().flatten(),
                    conditional: open.iter().any(|s| !matches!(s, Section::Files { .. })),
                });
                continue;
            }
            let deny = match words.as_slice() {
                ["require", "all", "denied"] | ["deny", "from", "all"] => true,
                ["require", "all", "granted"] | ["allow", "from", "all"] => false,
                // Some clients let in (an "only my IP" rule), in any section
                // outside a <Files> block: a folder-wide deny beside it
                // does not refuse everyone.
                ["allow", "from", ..] | ["require", ..] | ["satisfy", "any"] => {
                    if !open.iter().any(|s| matches!(s, Section::Files { .. })) {
                        some_let_in = true;
                    }
                    continue;
                }
                _ => continue,
            };
            if open.iter().any(|s| matches!(s, Section::Conditional)) {
                continue;
            }
            let block = open.iter_mut().rev().find_map(|s| match s {
                Section::Files { denies, .. } => Some(denies),
                _ => None,
            });
            match block {
                // Only a deny counts inside a block: whether a 2.2 `Allow`
                // beside it wins depends on `Order`, which check does not
                // model.
                Some(denies) => *denies |= deny,
                None => h.all = Some(deny),
            }
        }
        if some_let_in && h.all == Some(true) {
            h.all = None;
        }
        h
    }
}

/// The lines of a config file, with `\`-continued lines joined.
fn logical_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for raw in text.lines() {
        match raw.strip_suffix('\\') {
            Some(head) => cur.push_str(head),
            None => {
                cur.push_str(raw);
                out.push(std::mem::take(&mut cur));
            }
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn unquote(s: &str) -> &str {
    for q in ['"', '\''] {
        if let Some(inner) = s.strip_prefix(q).and_then(|s| s.strip_suffix(q)) {
            return inner;
        }
    }
    s
}

/// A regular expression as `<FilesMatch>` reads it (PCRE, searched for
/// anywhere in the file name), limited to what such patterns use: literals,
/// `\.` and other escapes, `.`, classes (`[a-z]`, `\d`, `\w`, `\s`), groups
/// with `|`, `^`, `$`, `* + ? {m,n}`, look-aheads `(?=` `(?!`, and a leading
/// `(?i)`. Anything else (look-behinds, back-references) does not parse, and such a block counts
/// as denying nothing. A `<Files>` wildcard is compiled to one, anchored.
#[derive(Clone, Debug)]
pub struct Regex {
    alts: Vec<Vec<Piece>>,
    icase: bool,
}

#[derive(Clone, Debug)]
struct Piece {
    node: Node,
    min: u32,
    max: u32,
}

#[derive(Clone, Debug)]
enum Node {
    Char(char),
    /// `.`
    Any,
    Class(Class),
    Start,
    End,
    Group(Vec<Vec<Piece>>),
    /// `(?=...)` or, negated, `(?!...)`: matches no characters.
    Look {
        negated: bool,
        alts: Vec<Vec<Piece>>,
    },
}

#[derive(Clone, Debug)]
struct Class {
    negated: bool,
    ranges: Vec<(char, char)>,
}

impl Class {
    fn has(&self, c: char, icase: bool) -> bool {
        let within = |c: char| self.ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi);
        let found = within(c)
            || (icase && (within(c.to_ascii_lowercase()) || within(c.to_ascii_uppercase())));
        found != self.negated
    }
}

const MANY: u32 = u32::MAX;
/// Backtracking steps one match may take: a pathological pattern gives up
/// (as "no match") instead of hanging check.
const MAX_STEPS: u32 = 100_000;

fn one(node: Node) -> Piece {
    Piece {
        node,
        min: 1,
        max: 1,
    }
}

/// Reads a pattern left to right.
struct Parser {
    s: Vec<char>,
    i: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.s.get(self.i).copied()
    }
    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }
    fn alts(&mut self) -> Option<Vec<Vec<Piece>>> {
        let mut alts = vec![self.seq()?];
        while self.peek() == Some('|') {
            self.i += 1;
            alts.push(self.seq()?);
        }
        Some(alts)
    }
    fn seq(&mut self) -> Option<Vec<Piece>> {
        let mut seq = Vec::new();
        while let Some(c) = self.peek() {
            if c == '|' || c == ')' {
                break;
            }
            let node = self.atom()?;
            let (min, max) = self.quantifier()?;
            seq.push(Piece { node, min, max });
        }
        Some(seq)
    }
    fn atom(&mut self) -> Option<Node> {
        Some(match self.next()? {
            '.' => Node::Any,
            '^' => Node::Start,
            '$' => Node::End,
            '(' => {
                // `(?:` groups; `(?=` and `(?!` look ahead (the shipped
                // rule's `^\.(?!well-known$)`). Other `(?` forms are
                // look-behinds and flags this matcher does not have.
                let mut look = None;
                if self.peek() == Some('?') {
                    look = match self.s.get(self.i + 1) {
                        Some(':') => None,
                        Some('=') => Some(false),
                        Some('!') => Some(true),
                        _ => return None,
                    };
                    self.i += 2;
                }
                let alts = self.alts()?;
                if self.next()? != ')' {
                    return None;
                }
                match look {
                    Some(negated) => Node::Look { negated, alts },
                    None => Node::Group(alts),
                }
            }
            '[' => Node::Class(self.class(false)?),
            '\\' => self.escape()?,
            '*' | '+' | '?' => return None,
            c => Node::Char(c),
        })
    }
    fn escape(&mut self) -> Option<Node> {
        let c = self.next()?;
        Some(match shorthand(c) {
            Some(class) => Node::Class(class),
            None => Node::Char(literal_escape(c)?),
        })
    }
    /// After `[`. A wildcard's class also takes `!` for negation, and `\`
    /// there always quotes the next character.
    fn class(&mut self, wildcard: bool) -> Option<Class> {
        let negated = match self.peek() {
            Some('^') => true,
            Some('!') if wildcard => true,
            _ => false,
        };
        if negated {
            self.i += 1;
        }
        let mut ranges = Vec::new();
        let mut first = true;
        loop {
            let c = self.next()?;
            if c == ']' && !first {
                break;
            }
            first = false;
            let lo = match c {
                '\\' if wildcard => self.next()?,
                '\\' => {
                    let e = self.next()?;
                    if let Some(class) = shorthand(e).filter(|c| !c.negated) {
                        ranges.extend(class.ranges);
                        continue;
                    }
                    literal_escape(e)?
                }
                // POSIX classes ([:alpha:]) are not supported.
                '[' if self.peek() == Some(':') => return None,
                c => c,
            };
            if self.peek() == Some('-') && self.s.get(self.i + 1).is_some_and(|&n| n != ']') {
                self.i += 1;
                let hi = match self.next()? {
                    '\\' if wildcard => self.next()?,
                    '\\' => literal_escape(self.next()?)?,
                    c => c,
                };
                if hi < lo {
                    return None;
                }
                ranges.push((lo, hi));
            } else {
                ranges.push((lo, lo));
            }
        }
        Some(Class { negated, ranges })
    }
    /// `*`, `+`, `?`, `{m}`, `{m,}`, `{m,n}` after an atom; (1, 1) for none.
    fn quantifier(&mut self) -> Option<(u32, u32)> {
        let q = match self.peek() {
            Some('*') => (0, MANY),
            Some('+') => (1, MANY),
            Some('?') => (0, 1),
            Some('{') => {
                return match self.braces() {
                    Some(q) => self.lazy(q),
                    // PCRE: a `{` that is not a quantifier is a literal.
                    None => Some((1, 1)),
                };
            }
            _ => return Some((1, 1)),
        };
        self.i += 1;
        self.lazy(q)
    }
    /// After a quantifier: a lazy `?` finds the same matches as a greedy
    /// one; a possessive `+` may not, and is refused.
    fn lazy(&mut self, q: (u32, u32)) -> Option<(u32, u32)> {
        match self.peek() {
            Some('?') => self.i += 1,
            Some('+') => return None,
            _ => {}
        }
        Some(q)
    }
    /// `{m}`, `{m,}` or `{m,n}` at the cursor, moved past; None leaves the
    /// cursor alone.
    fn braces(&mut self) -> Option<(u32, u32)> {
        let rest: String = self.s[self.i + 1..].iter().collect();
        let end = rest.find('}')?;
        let inner = &rest[..end];
        let (min, max) = match inner.split_once(',') {
            None => {
                let n = inner.parse().ok()?;
                (n, n)
            }
            Some((m, "")) => (m.parse().ok()?, MANY),
            Some((m, n)) => (m.parse().ok()?, n.parse().ok()?),
        };
        if min > max || min > 1000 || (max != MANY && max > 1000) {
            return None;
        }
        self.i += end + 2;
        Some((min, max))
    }
}

/// `\d \w \s` and their negations.
fn shorthand(c: char) -> Option<Class> {
    let ranges = match c.to_ascii_lowercase() {
        'd' => vec![('0', '9')],
        'w' => vec![('a', 'z'), ('A', 'Z'), ('0', '9'), ('_', '_')],
        's' => vec![(' ', ' '), ('\t', '\r')],
        _ => return None,
    };
    Some(Class {
        negated: c.is_ascii_uppercase(),
        ranges,
    })
}

/// The character an escape stands for; None for escapes with another
/// meaning (`\b`, `\1`, `\A`, ...), which are not supported.
fn literal_escape(c: char) -> Option<char> {
    match c {
        'n' => Some('\n'),
        't' => Some('\t'),
        c if c.is_ascii_alphanumeric() => None,
        c => Some(c),
    }
}

impl Regex {
    fn parse(src: &str) -> Option<Regex> {
        let (icase, src) = match src.strip_prefix("(?i)") {
            Some(rest) => (true, rest),
            None => (false, src),
        };
        let mut p = Parser {
            s: src.chars().collect(),
            i: 0,
        };
        let alts = p.alts()?;
        // A `)` without its `(`.
        if p.i != p.s.len() {
            return None;
        }
        Some(Regex { alts, icase })
    }

    /// A `<Files>` wildcard (`*`, `?`, `[...]`), matching the whole name.
    fn wildcard(src: &str) -> Option<Regex> {
        let mut p = Parser {
            s: src.chars().collect(),
            i: 0,
        };
        let mut seq = vec![one(Node::Start)];
        while let Some(c) = p.next() {
            seq.push(match c {
                '*' => Piece {
                    node: Node::Any,
                    min: 0,
                    max: MANY,
                },
                '?' => one(Node::Any),
                '[' => one(Node::Class(p.class(true)?)),
                '\\' => one(Node::Char(p.next()?)),
                c => one(Node::Char(c)),
            });
        }
        seq.push(one(Node::End));
        Some(Regex {
            alts: vec![seq],
            icase: false,
        })
    }

    pub fn is_match(&self, name: &str) -> bool {
        let s: Vec<char> = name.chars().collect();
        let m = Matcher {
            s: &s,
            icase: self.icase,
            steps: Cell::new(0),
        };
        (0..=s.len()).any(|start| m.alts(&self.alts, start, &|_| true))
    }
}

/// A backtracking matcher: each step hands what follows to a continuation.
struct Matcher<'a> {
    s: &'a [char],
    icase: bool,
    steps: Cell<u32>,
}

impl Matcher<'_> {
    fn alts(&self, alts: &[Vec<Piece>], i: usize, k: &dyn Fn(usize) -> bool) -> bool {
        alts.iter().any(|seq| self.seq(seq, i, k))
    }
    fn seq(&self, seq: &[Piece], i: usize, k: &dyn Fn(usize) -> bool) -> bool {
        match seq.split_first() {
            None => k(i),
            Some((p, rest)) => self.rep(p, 0, i, &|j| self.seq(rest, j, k)),
        }
    }
    /// `p` has matched `n` times, up to `i`: greedily once more, else go on.
    fn rep(&self, p: &Piece, n: u32, i: usize, k: &dyn Fn(usize) -> bool) -> bool {
        let steps = self.steps.get() + 1;
        self.steps.set(steps);
        if steps > MAX_STEPS {
            return false;
        }
        // An empty repetition past the minimum would only loop.
        let more = n < p.max
            && self.node(&p.node, i, &|j| {
                (j > i || n < p.min) && self.rep(p, n.saturating_add(1), j, k)
            });
        more || (n >= p.min && k(i))
    }
    fn node(&self, node: &Node, i: usize, k: &dyn Fn(usize) -> bool) -> bool {
        let here = self.s.get(i).copied();
        match node {
            Node::Start => i == 0 && k(i),
            Node::End => i == self.s.len() && k(i),
            Node::Any => here.is_some_and(|c| c != '\n') && k(i + 1),
            Node::Char(want) => {
                here.is_some_and(|c| c == *want || (self.icase && c.eq_ignore_ascii_case(want)))
                    && k(i + 1)
            }
            Node::Class(class) => here.is_some_and(|c| class.has(c, self.icase)) && k(i + 1),
            Node::Group(alts) => self.alts(alts, i, k),
            Node::Look { negated, alts } => self.alts(alts, i, &|_| true) != *negated && k(i),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deny_counts_only_in_sections_that_apply_on_apache_24() {
        let denied = |text: &str| Htaccess::parse(text).files.len();
        let files = |wrap_open: &str, wrap_close: &str| {
            format!("<Files site.toml>\n{wrap_open}\nRequire all denied\n{wrap_close}\n</Files>\n")
        };
        assert_eq!(
            denied(&files("<IfModule mod_authz_core.c>", "</IfModule>")),
            1
        );
        assert_eq!(
            denied(&files("<IfModule !mod_authz_core.c>", "</IfModule>")),
            0
        );
        assert_eq!(denied(&files("<IfModule mod_access.c>", "</IfModule>")), 0);
        assert_eq!(denied(&files("<IfVersion < 2.4>", "</IfVersion>")), 0);
        // The shipped file: its 2.4 rule counts whatever its 2.2 one does.
        let auto = include_str!("../htaccess/auto.htaccess");
        assert!(
            Htaccess::parse(auto)
                .files
                .iter()
                .any(|p| p.is_match("site.toml"))
        );
    }

    #[test]
    fn options_and_rewrite_patterns_that_stop_the_site_are_seen() {
        let h = Htaccess::parse("Options +ExecCGI\nRewriteRule ^(.*)$ mysite.fcgi/$1 [L]\n");
        assert_eq!((h.exec_cgi, h.slash_patterns.len()), (Some(true), 0));
        assert_eq!(h.rewrites_to, ["mysite.fcgi"]);
        for (text, exec_cgi) in [
            ("Options +ExecCGI\nOptions -ExecCGI\n", Some(false)),
            ("Options None\n", Some(false)),
            ("Options Indexes FollowSymLinks\n", Some(false)),
            ("Options All\n", Some(true)),
            ("Options ExecCGI\nOptions -Indexes\n", Some(true)),
            ("<IfModule x.c>\nOptions -ExecCGI\n</IfModule>\n", None),
        ] {
            assert_eq!(Htaccess::parse(text).exec_cgi, exec_cgi, "{text}");
        }
        let h = Htaccess::parse("RewriteRule ^/(.*)$ /mysite.fcgi/$1 [QSA,L]\n");
        assert_eq!(h.slash_patterns, ["^/(.*)$"]);
        assert_eq!(h.rewrites_to, ["mysite.fcgi"]);
        let h =
            Htaccess::parse("RewriteRule ^/?(.*)$ ./blog/app.fcgi/$1 [L]\nRewriteRule . - [L]\n");
        assert_eq!(
            (h.slash_patterns.len(), h.rewrites_to.clone()),
            (0, vec!["app.fcgi".to_owned()])
        );
    }

    #[test]
    fn a_folder_wide_deny_that_lets_some_clients_in_is_no_deny_for_all() {
        assert_eq!(Htaccess::parse("Require all denied\n").all, Some(true));
        for text in [
            "Order Deny,Allow\nDeny from all\nAllow from 203.0.113.5\n",
            "<IfModule !mod_authz_core.c>\nOrder Deny,Allow\nAllow from 203.0.113.5\n</IfModule>\nDeny from all\n",
            "<RequireAny>\nRequire ip 203.0.113.5\n</RequireAny>\nRequire all denied\n",
            "Require all denied\nRequire valid-user\n",
        ] {
            assert_eq!(Htaccess::parse(text).all, None, "{text}");
        }
        // A grant inside a <Files> block is about that file only.
        let h = Htaccess::parse(
            "Require all denied\n<Files robots.txt>\nRequire ip 10.0.0.1\n</Files>\n",
        );
        assert_eq!(h.all, Some(true));
    }

    #[test]
    fn handlers_are_read_in_order_with_their_extensions_and_scope() {
        let h = Htaccess::parse(
            "# AddHandler cgi-script .fcgi\n\
             <IfModule mod_fcgid.c>\n  AddHandler fcgid-script .fcgi\n</IfModule>\n\
             <IfModule !mod_fcgid.c>\n  AddHandler \"FastCGI-Script\" .FCGI .fcg\n</IfModule>\n\
             AddHandler cgi-script .cgi .pl\n\
             <Files mysite.fcgi>\n  SetHandler cgi-script\n</Files>\n\
             <FilesMatch \"\\.php$\">\n  SetHandler \"proxy:unix:/run/php.sock|fcgi://localhost\"\n</FilesMatch>\n\
             RemoveHandler .fcgi\n",
        );
        let names: Vec<Option<&str>> = h.handlers.iter().map(|x| x.name.as_deref()).collect();
        assert_eq!(
            names,
            [
                Some("fcgid-script"),
                Some("fastcgi-script"),
                Some("cgi-script"),
                Some("cgi-script"),
                Some("proxy:unix:/run/php.sock|fcgi://localhost"),
                None,
            ]
        );
        let conditional: Vec<bool> = h.handlers.iter().map(|x| x.conditional).collect();
        assert_eq!(conditional, [true, true, false, false, false, false]);
        let applies: Vec<bool> = h
            .handlers
            .iter()
            .map(|x| x.applies_to("mysite.fcgi"))
            .collect();
        assert_eq!(applies, [true, true, false, true, false, true]);
        assert!(h.handlers[1].applies_to("site.fcg"));
        assert!(h.handlers[2].applies_to("run.cgi.bak"));
        assert!(!h.handlers[0].applies_to("fcgi"));
        assert!(!h.handlers[3].applies_to("admin.fcgi"));
        assert!(h.handlers[4].applies_to("index.php"));
    }

    #[test]
    fn filesmatch_regexes_search_the_name() {
        // (pattern, name, matches)
        let rows: &[(&str, &str, bool)] = &[
            (r"\.(toml|log|pid)$", "site.toml", true),
            (r"\.(toml|log|pid)$", "shim.log", true),
            (r"\.(toml|log|pid)$", "mysite.fcgi", false),
            (r"\.(toml|log|pid)$", "site.toml.bak", false),
            (r"\.(toml|log|pid)$", "toml", false),
            (r"^site\.toml$", "site.toml", true),
            (r"^site\.toml$", "my-site.toml", false),
            (r"site.toml", "siteXtoml", true),
            (r"\.toml", "a.toml.txt", true),
            (r"(?i)\.TOML$", "site.toml", true),
            (r"\.TOML$", "site.toml", false),
            (r"[.]t[a-z]ml$", "site.toml", true),
            (r"[^.]toml$", "site.toml", false),
            (r"\.(?:toml|ini)$", "x.ini", true),
            (r"^\.ht", ".htaccess", true),
            (r"^.*\.log$", "mysite.log", true),
            (r"\.lo+g$", "x.looog", true),
            (r"\.t?oml$", "x.oml", true),
            (r"^x{2,3}$", "xxx", true),
            (r"^x{2,3}$", "xxxx", false),
            (r"^x{2}$", "xx", true),
            (r"^a{,2}$", "a{,2}", true),
            (r"\w+\.\d$", "log_1.7", true),
            (r"^(a*)*b$", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaac", false),
            (r"^$", "", true),
            (r"x|", "anything", true),
            (r"^\.(?!well-known$)", ".env", true),
            (r"^\.(?!well-known$)", ".well-known", false),
            (r"^\.(?!well-known$)", ".well-known2", true),
            (r"^\.(?=git)", ".gitignore", true),
            (r"^\.(?=git)", ".env", false),
            (
                r"(?i)(\.(py|db)|~)$|^\.(?!well-known$)",
                "Settings.PY",
                true,
            ),
        ];
        for &(pattern, name, want) in rows {
            let re = Regex::parse(pattern).unwrap_or_else(|| panic!("{pattern} should parse"));
            assert_eq!(re.is_match(name), want, "{pattern} on {name}");
        }
    }

    #[test]
    fn unsupported_regexes_do_not_parse() {
        for pattern in [
            r"(?<!x)",
            r"(?P<n>x)",
            r"\bsite",
            r"(a",
            r"a)",
            r"[abc",
            r"*x",
            r"a++",
            r"\1",
            "[[:alpha:]]",
        ] {
            assert!(Regex::parse(pattern).is_none(), "{pattern} parsed");
        }
    }

    #[test]
    fn files_wildcards_match_the_whole_name() {
        let rows: &[(&str, &str, bool)] = &[
            ("site.toml", "site.toml", true),
            ("site.toml", "mysite.toml", false),
            ("*.toml", "site.toml", true),
            ("*.toml", "site.toml.bak", false),
            ("site.?oml", "site.toml", true),
            ("[st]ite.toml", "site.toml", true),
            ("*.[!t]oml", "site.toml", false),
            ("*.[^t]oml", "site.xoml", true),
            ("*", "anything", true),
            ("a\\*", "a*", true),
            ("a\\*", "ab", false),
        ];
        for &(pattern, name, want) in rows {
            let re = Regex::wildcard(pattern).unwrap_or_else(|| panic!("{pattern} should parse"));
            assert_eq!(re.is_match(name), want, "{pattern} on {name}");
        }
    }

    /// Does this .htaccess text deny `name`, by a block or for the folder?
    fn denies(text: &str, name: &str) -> bool {
        let h = Htaccess::parse(text);
        h.files.iter().any(|p| p.is_match(name)) || h.all == Some(true)
    }

    #[test]
    fn htaccess_deny_rules_are_told_from_mentions() {
        let rows: &[(&str, &str, bool)] = &[
            // Comments and other directives only mention the file.
            (
                "# <Files site.toml> Require all denied\n",
                "site.toml",
                false,
            ),
            (
                "# deny site.toml\nRewriteRule ^site\\.toml$ - [L]\n",
                "site.toml",
                false,
            ),
            ("  # Require all denied\n", "site.toml", false),
            // 2.4, in every spelling.
            (
                "<Files site.toml>\nRequire all denied\n</Files>\n",
                "site.toml",
                true,
            ),
            (
                "<Files \"site.toml\">\n  Require all denied\n</Files>\n",
                "site.toml",
                true,
            ),
            (
                "<files 'site.toml'>\nrequire ALL Denied\n</files>\n",
                "site.toml",
                true,
            ),
            (
                "<FilesMatch \"\\.toml$\">\nRequire all denied\n</FilesMatch>\n",
                "site.toml",
                true,
            ),
            (
                "<FILESMATCH \\.(toml|log)$>\nRequire all denied\n</FILESMATCH>\n",
                "x.log",
                true,
            ),
            (
                "<Files ~ \"\\.toml$\">\nRequire all denied\n</Files>\n",
                "site.toml",
                true,
            ),
            (
                "<Files *.toml>\nRequire all denied\n</Files>\n",
                "site.toml",
                true,
            ),
            // 2.2.
            (
                "<Files site.toml>\nOrder allow,deny\nDeny from all\n</Files>\n",
                "site.toml",
                true,
            ),
            (
                "<FilesMatch \"\\.toml$\">\n deny from all\n</FilesMatch>\n",
                "site.toml",
                true,
            ),
            // The shipped form: both, each in its IfModule.
            (
                "<FilesMatch \"\\.(toml|log|pid)$\">\n<IfModule mod_authz_core.c>\nRequire all \
                     denied\n</IfModule>\n<IfModule !mod_authz_core.c>\nOrder allow,deny\nDeny from \
                     all\n</IfModule>\n</FilesMatch>\n",
                "site.toml",
                true,
            ),
            // A block for another name, or one that grants.
            (
                "<Files other.toml>\nRequire all denied\n</Files>\n",
                "site.toml",
                false,
            ),
            (
                "<Files site.toml>\nRequire all granted\n</Files>\n",
                "site.toml",
                false,
            ),
            (
                "<Files site.toml>\n# Require all denied\n</Files>\n",
                "site.toml",
                false,
            ),
            // A deny that holds only for some requests.
            (
                "<Files site.toml>\n<Limit POST>\nRequire all denied\n</Limit>\n</Files>\n",
                "site.toml",
                false,
            ),
            (
                "<Files site.toml>\n<If \"-n %{HTTP:X}\">\nRequire all denied\n</If>\n</Files>\n",
                "site.toml",
                false,
            ),
            // A block never closed: Apache refuses the file; nothing counts.
            (
                "<Files site.toml>\nRequire all denied\n",
                "site.toml",
                false,
            ),
            // The whole folder.
            ("Require all denied\n", "site.toml", true),
            (
                "Require all denied\nRequire all granted\n",
                "site.toml",
                false,
            ),
            // Only where the file exists (the shipped form): it does.
            (
                "<FilesMatch \"\\.toml$\">\n<If \"-f %{REQUEST_FILENAME}\">\nRequire all denied\n</If>\n</FilesMatch>\n",
                "site.toml",
                true,
            ),
            // Any other condition may not hold.
            (
                "<FilesMatch \"\\.toml$\">\n<If \"%{QUERY_STRING} == 'x'\">\nRequire all denied\n</If>\n</FilesMatch>\n",
                "site.toml",
                false,
            ),
            // A continued line.
            (
                "<Files \\\n site.toml>\nRequire all \\\n denied\n</Files>\n",
                "site.toml",
                true,
            ),
        ];
        for &(text, name, want) in rows {
            assert_eq!(denies(text, name), want, "{name} in:\n{text}");
        }
    }

    #[test]
    fn the_shipped_htaccess_files_deny_site_toml_and_the_log_and_not_the_shim() {
        let shipped = [
            ("auto", include_str!("../htaccess/auto.htaccess")),
            ("cgi", include_str!("../htaccess/cgi.htaccess")),
            ("fastcgi", include_str!("../htaccess/fastcgi.htaccess")),
            ("fcgid", include_str!("../htaccess/fcgid.htaccess")),
        ];
        for (file, text) in shipped {
            assert!(denies(text, "site.toml"), "{file}.htaccess: site.toml");
            assert!(denies(text, "mysite.log"), "{file}.htaccess: mysite.log");
            assert!(!denies(text, "mysite.fcgi"), "{file}.htaccess: mysite.fcgi");
            for private in ["settings.py", "db.sqlite3", ".env", "site.toml~"] {
                assert!(denies(text, private), "{file}.htaccess: {private}");
            }
            for public in ["style.css", ".well-known", "report.pdf"] {
                assert!(!denies(text, public), "{file}.htaccess: {public}");
            }
        }
    }
}
