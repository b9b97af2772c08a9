#!/usr/bin/env python3
"""No import cycles between files of different modules in src/ and runtimes/.

Every `crate::` / `super::` / `self::` path in a file (its `use` lines and paths written in
code, not in comments or `#[cfg(test)]` modules) is resolved, through `pub use` re-exports,
to the file that defines the item. A module's own files (its mod.rs and the files under it)
are one room; between any other two files, a cycle of such edges fails the check. A rough
parse, not a compiler: it reads the source text, which is enough for this tree's style.
"""
import os
import re
import sys
from collections import defaultdict

ROOT = sys.argv[1] if len(sys.argv) > 1 else "."
# Files mounted with #[path]: the stand-ins compiled when a feature is off, and test files.
MOUNTED = {
    "runtimes/driver/transport/no_tls.rs": ("runtimes", "driver", "transport", "tls"),
    "runtimes/driver/transport/no_ws.rs": ("runtimes", "driver", "transport", "ws"),
}
TESTS = {"runtimes/driver/transport/tests.rs", "runtimes/driver/writer_tests.rs"}

files = defaultdict(list)  # module path -> its file(s)
for base, prefix in (("src", ()), ("runtimes", ("runtimes",))):
    for d, _, names in os.walk(os.path.join(ROOT, base)):
        for f in names:
            if not f.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(d, f), ROOT)
            if rel in TESTS:
                continue
            if rel in MOUNTED:
                files[MOUNTED[rel]].append(rel)
                continue
            parts = os.path.relpath(os.path.join(d, f), os.path.join(ROOT, base))[:-3]
            parts = parts.split(os.sep)
            if parts[-1] in ("mod", "lib"):
                parts = parts[:-1]
            files[prefix + tuple(parts)].append(rel)


def without_tests(src):
    """The source without its `#[cfg(test)] mod name { ... }` blocks and comments."""
    out, skip, depth, pending = [], False, 0, False
    for line in src.split("\n"):
        if skip:
            depth += line.count("{") - line.count("}")
            skip = depth > 0
            continue
        if line.strip() == "#[cfg(test)]":
            pending = True
            continue
        if pending and re.match(r"\s*mod \w+ \{", line):
            skip, depth = True, line.count("{") - line.count("}")
            pending = False
            continue
        pending = False
        out.append(line)
    return re.sub(r"//[^\n]*", "", "\n".join(out))


def expand(tree, prefix=""):
    """`a::{b, c::{d, e}}` -> [a::b, a::c::d, a::c::e]"""
    tree = tree.strip()
    m = re.match(r"^([\w:]*?)(?:::)?\{(.*)\}$", tree, re.S)
    if m:
        head, inner = m.group(1), m.group(2)
        parts, depth, cur = [], 0, ""
        for ch in inner:
            depth += (ch == "{") - (ch == "}")
            if ch == "," and depth == 0:
                parts.append(cur)
                cur = ""
            else:
                cur += ch
        parts.append(cur)
        sub = prefix + head + ("::" if head else "")
        return [p for part in parts if part.strip() for p in expand(part, sub)]
    return [prefix + re.sub(r"\s+as\s+\w+$", "", tree)]


def absolute(module, path):
    segs = path.split("::")
    if segs[0] == "crate":
        return tuple(segs[1:])
    if segs[0] in ("self", "super"):
        cur = list(module)
        if segs[0] == "self":
            segs = segs[1:]
        while segs and segs[0] == "super":
            cur, segs = cur[:-1], segs[1:]
        return tuple(cur + segs)
    if module + (segs[0],) in files:  # a child module named without `self::`
        return module + tuple(segs)
    return None  # std, dependencies, local names


defined = defaultdict(set)
reexported = defaultdict(dict)
used = defaultdict(list)
ITEM = r"^\s*(?:pub(?:\([\w:]+\))?\s+)?(?:const\s+|async\s+)*(?:struct|enum|fn|trait|type|const|static|mod|union)\s+(\w+)"
for module, rels in files.items():
    for rel in rels:
        src = without_tests(open(os.path.join(ROOT, rel)).read())
        defined[module].update(re.findall(ITEM, src, re.M))
        for m in re.finditer(r"^\s*(pub(?:\([\w:]+\))?\s+)?use\s+([^;]+);", src, re.M):
            for p in expand(m.group(2)):
                a = absolute(module, p)
                if not a:
                    continue
                if a[-1] == "self":
                    a = a[:-1]
                if m.group(1):
                    reexported[module][a[-1]] = a
                used[module].append(a)
        for m in re.finditer(r"(?<![\w:])((?:crate|super|self)(?:::\w+)+)", src):
            a = absolute(module, m.group(1))
            if a:
                used[module].append(a)


def home(path, depth=0):
    """The module whose file defines the item at `path`."""
    for k in range(len(path), -1, -1):
        module, rest = path[:k], path[k:]
        if module not in files:
            continue
        if rest and rest[0] in reexported[module] and rest[0] not in defined[module] and depth < 10:
            return home(reexported[module][rest[0]] + rest[1:], depth + 1)
        return module
    return None


def kin(a, b):
    return a[: len(b)] == b or b[: len(a)] == a


edges = defaultdict(set)
for module, paths in used.items():
    for p in paths:
        h = home(p)
        if h is not None and h != () and not kin(module, h):
            edges[module].add(h)

# Strongly connected components (Tarjan).
sys.setrecursionlimit(10000)
index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]


def visit(v):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on.add(v)
    for w in edges[v]:
        if w not in index:
            visit(w)
            low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop()
            on.discard(w)
            comp.append(w)
            if w == v:
                break
        if len(comp) > 1:
            found.append(comp)


for v in list(files):
    if v not in index:
        visit(v)
for comp in found:
    names = {m: files[m][0] for m in comp}
    print("cycles: these files import each other:", ", ".join(sorted(names.values())), file=sys.stderr)
    for a in sorted(comp):
        for b in sorted(edges[a] & set(comp)):
            print(f"    {names[a]} -> {names[b]}", file=sys.stderr)
if found:
    sys.exit(1)
print(f"cycles: ok ({len(files)} modules)")
