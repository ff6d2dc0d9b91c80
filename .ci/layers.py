#!/usr/bin/env python3
"""Checks the module structure of the workspace's crates: no import cycle between modules, and
in strata-query no module importing from a layer above its own.

A module is a source file (`foo.rs`, `foo/bar.rs`, `lib.rs`). Module A depends on module B when
A's code names a path into B (`use crate::b::X`, `crate::b::f()`, `super::b::X`, or `b::X` for a
child module `b` of A); the dependency goes to the deepest module the path names, so a child
that reaches its parent's re-export depends on the parent. Comments, string literals and
`#[cfg(test)] mod tests` blocks are ignored: tests may drive the whole crate.

Run `python3 .ci/layers.py` from the repository root; `--self-test` checks the checker on
small synthetic crates (one with a cycle, one with an upward import) and must fail those.
"""

import os
import re
import sys
import tempfile

# strata-query's layers, top to bottom. A module may use modules of its own layer or below.
QUERY_LAYERS = [
    ["statement"],
    ["mv"],
    ["session", "cluster"],
    ["catalog", "rules"],
    ["table"],
    ["warehouse", "config", "parser", "types", "progress", "result", "scan_cache", "schedule", "memory", "error",
     "redact", "commit_gate", "functions", "formats", "telemetry"],
]

# Crates that must not depend on a crate directly (they reach it through the one in between).
FORBIDDEN_DEPENDENCIES = {
    "crates/server": ["strata-storage"],
    "crates/cli": ["strata-storage"],
}

STRING = re.compile(r'r(#*)"(?:.|\n)*?"\1|b?"(?:\\.|[^"\\])*"', re.S)
CHAR = re.compile(r"b?'(?:\\.|[^'\\\n])'")
LINE_COMMENT = re.compile(r"//[^\n]*")
BLOCK_COMMENT = re.compile(r"/\*.*?\*/", re.S)
TEST_MODULE = re.compile(r"#\[cfg\(test\)\]\s*(pub(\([^)]*\))?\s+)?mod\s+\w+\s*\{")
USE = re.compile(r"\buse\s+([^;]+);")
PATH = re.compile(r"\b((?:crate|super|self)(?:\s*::\s*\w+)+)")
MOD_DECL = re.compile(r"\bmod\s+(\w+)\s*;")
PUB_USE = re.compile(r"\bpub(?:\([^)]*\))?\s+use\s+([^;]+);")


def strip(text):
    """The code of `text` without comments, literals and test modules."""
    text = BLOCK_COMMENT.sub(" ", text)
    text = CHAR.sub("' '", text)
    text = STRING.sub('""', text)
    text = LINE_COMMENT.sub("", text)
    out, pos = [], 0
    for m in TEST_MODULE.finditer(text):
        if m.start() < pos:
            continue
        out.append(text[pos : m.start()])
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        pos = i
    out.append(text[pos:])
    return inline_modules_flattened("".join(out))


INLINE_MODULE = re.compile(r"\bmod\s+\w+\s*\{")


def inline_modules_flattened(text):
    """`mod m { ... }` inside a file counts as part of the file's module: its `super::` paths
    name the file's module."""
    out, pos = [], 0
    for m in INLINE_MODULE.finditer(text):
        if m.start() < pos:
            continue
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        out.append(text[pos : m.end()])
        out.append(re.sub(r"\bsuper\s*::", "self::", text[m.end() : i]))
        pos = i
    out.append(text[pos:])
    return "".join(out)


def expand_use(tree):
    """`a::{b, c::{d, e}}` as the paths a::b, a::c::d, a::c::e (each a list of segments)."""
    tree = re.sub(r"\s+as\s+", "@", tree)
    tree = re.sub(r"\s+", "", tree)

    def parse(s, i, prefix):
        paths, seg = [], prefix[:]
        token = ""
        while i < len(s):
            ch = s[i]
            if s.startswith("::", i):
                if token:
                    seg.append(token)
                token = ""
                i += 2
            elif ch == "{":
                if token:
                    seg.append(token)
                    token = ""
                sub, i = parse(s, i + 1, seg)
                paths.extend(sub)
                seg = None
            elif ch == ",":
                if seg is not None:
                    paths.append(seg + ([token] if token else []))
                seg, token = prefix[:], ""
                i += 1
            elif ch == "}":
                if seg is not None:
                    paths.append(seg + ([token] if token else []))
                return paths, i + 1
            else:
                token += ch
                i += 1
        if seg is not None:
            paths.append(seg + ([token] if token else []))
        return paths, i

    paths, _ = parse(tree, 0, [])
    # `x as y` stays as `x@y` in the last segment: the path names x, the scope gets y.
    return [[p for p in path if p] for path in paths if path]


def modules(src):
    """Module path (tuple) -> file, for the crate whose sources are in `src`."""
    found = {}
    for dirpath, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, f), src)
            parts = rel[:-3].split(os.sep)
            if parts in (["lib"], ["main"]):
                key = ()
            elif parts[-1] == "mod":
                key = tuple(parts[:-1])
            else:
                key = tuple(parts)
            found[key] = os.path.join(dirpath, f)
    # Keep only modules reachable through `mod` declarations from the root.
    reachable, todo = set(), [()]
    while todo:
        m = todo.pop()
        if m in reachable or m not in found:
            continue
        reachable.add(m)
        code = strip(open(found[m], encoding="utf-8").read())
        todo.extend(m + (child,) for child in MOD_DECL.findall(code))
    return {m: found[m] for m in reachable}


def resolve(module, path, known, exports=None, depth=0):
    """The module that defines what `path` (segments) names from `module`, or None: the
    deepest module the path names, followed through that module's re-exports (`pub use`)."""
    path = [p.split("@")[0] for p in path]
    if not path:
        return None
    head, rest = path[0], path[1:]
    if head == "crate":
        base = ()
    elif head == "self":
        base = module
    elif head == "super":
        base = module[:-1]
        while rest and rest[0] == "super":
            base, rest = base[:-1], rest[1:]
    elif module + (head,) in known:
        base, rest = module + (head,), rest
    else:
        return None
    target = base
    for i, seg in enumerate(rest):
        if target + (seg,) in known:
            target = target + (seg,)
            continue
        reexport = (exports or {}).get(target, {}).get(seg)
        if reexport is not None and depth < 16:
            via = resolve(target, reexport, known, exports, depth + 1)
            if via is not None:
                return via
        break
    return target


def dependencies(src):
    """Module -> the set of modules it depends on."""
    known = modules(src)
    codes = {m: strip(open(p, encoding="utf-8").read()) for m, p in known.items()}
    # Module -> name it re-exports -> the path it re-exports.
    exports = {}
    for module, code in codes.items():
        for m in PUB_USE.finditer(code):
            for p in expand_use(m.group(1)):
                exports.setdefault(module, {})[p[-1].split("@")[-1]] = p
    deps = {}
    for module in known:
        code = codes[module]
        paths = []
        for m in USE.finditer(code):
            paths.extend(expand_use(m.group(1)))
        for m in PATH.finditer(USE.sub(" ", code)):
            paths.append(re.sub(r"\s+", "", m.group(1)).split("::"))
        targets = set()
        for p in paths:
            t = resolve(module, p, known, exports)
            if t is not None and t != module:
                targets.add(t)
        deps[module] = targets
    return deps


def cycles(deps):
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(deps.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(10000)
    for v in sorted(deps):
        if v not in index:
            visit(v)
    return out


def name(module):
    return "::".join(module) or "crate"


def layer_violations(deps, layers):
    """Edges from a module to a module of a higher layer, and top-level modules in no layer."""
    rank = {}
    for i, layer in enumerate(layers):
        for m in layer:
            rank[m] = len(layers) - i
    problems = []
    for module, targets in deps.items():
        if not module:
            continue
        if module[0] not in rank:
            problems.append(f"module {name(module)} is in no layer; add it to QUERY_LAYERS")
            continue
        for t in targets:
            if t and t[0] != module[0] and t[0] in rank and rank[t[0]] > rank[module[0]]:
                problems.append(
                    f"{name(module)} imports {name(t)}, a layer above it "
                    f"({module[0]} is below {t[0]})"
                )
    return sorted(set(problems))


def check_crate(src, layers=None):
    deps = dependencies(src)
    problems = []
    for c in cycles(deps):
        chain = " -> ".join(name(m) for m in c)
        problems.append(f"import cycle between modules: {chain}")
    if layers:
        problems.extend(layer_violations(deps, layers))
    return problems, deps


def check_workspace(root):
    problems = []
    crates = sorted(
        os.path.join(root, "crates", d) for d in os.listdir(os.path.join(root, "crates"))
    ) + [os.path.join(root, "benches")]
    counted = 0
    for crate in crates:
        src = os.path.join(crate, "src")
        if not os.path.isdir(src):
            continue
        layers = QUERY_LAYERS if crate.endswith(os.path.join("crates", "query")) else None
        found, deps = check_crate(src, layers)
        counted += len(deps)
        problems.extend(f"{os.path.relpath(crate, root)}: {p}" for p in found)
        rel = os.path.relpath(crate, root)
        manifest = open(os.path.join(crate, "Cargo.toml"), encoding="utf-8").read()
        for dep in FORBIDDEN_DEPENDENCIES.get(rel, []):
            if re.search(rf"^{re.escape(dep)}\s*=", manifest, re.M):
                problems.append(f"{rel}: depends on {dep} directly; go through strata-query")
    return problems, counted


def self_test():
    """The checker must find a cycle, an upward import and a parent/child loop."""
    cases = {
        "cycle": {"lib.rs": "mod a; mod b;", "a.rs": "use crate::b::X;", "b.rs": "use crate::a::Y;"},
        "upward": {
            "lib.rs": "mod statement; mod table;",
            "statement.rs": "",
            "table.rs": "fn f() { crate::statement::run(); }",
        },
        "parent_child": {
            "lib.rs": "mod t;",
            "t.rs": "mod p; pub use p::{X, Y};",
            "t/p.rs": "use crate::t::{Z as W};",
        },
    }
    clean = {
        "lib.rs": "mod statement; mod table; // crate::statement::x in a comment",
        "statement.rs": 'use crate::table::{a::{B, C}, D}; const S: &str = "crate::statement";',
        "table.rs": "pub mod a; #[cfg(test)]\nmod tests { use crate::statement::X; }",
        "table/a.rs": "",
    }
    layers = [["statement"], ["table"], ["t", "a", "b"]]
    failures = []
    for label, files in list(cases.items()) + [("clean", clean)]:
        with tempfile.TemporaryDirectory() as d:
            for rel, text in files.items():
                os.makedirs(os.path.dirname(os.path.join(d, rel)), exist_ok=True)
                with open(os.path.join(d, rel), "w", encoding="utf-8") as f:
                    f.write(text)
            problems, _ = check_crate(d, layers)
            if (label == "clean") == bool(problems):
                failures.append(f"{label}: {problems or 'nothing found'}")
    return failures


def main():
    if "--self-test" in sys.argv:
        failures = self_test()
        for f in failures:
            print(f"layers.py self-test failed: {f}", file=sys.stderr)
        print(f"layers self-test: {'failed' if failures else 'ok'}")
        return 1 if failures else 0
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    problems, counted = check_workspace(root)
    for p in problems:
        print(p, file=sys.stderr)
    print(f"layers: {counted} modules checked, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
