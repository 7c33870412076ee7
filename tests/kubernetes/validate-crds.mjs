// Checks the prometheus-operator custom resources among the manifests
// (monitoring.coreos.com: ServiceMonitor, PodMonitor, PrometheusRule, ...)
// against the operator's API, for tests/kubernetes.rs, which parses the YAML
// and hands the documents over on stdin as JSON: [{"file": F, "doc": {...}}].
//
// Two checks per document, with @kubernetes-models/prometheus-operator (npm;
// generated from the operator's Go API, the types its CRDs are generated from):
// 1. its validator: types, enums, required fields, patterns;
// 2. every key the manifest sets is a field the API declares. The validator
//    lets unknown keys through (as an API server prunes them), so a typo such
//    as `intervall` would otherwise pass and silently do nothing; the fields
//    are read from the package's TypeScript declarations, class by class.
//
// Prints one line per document, "ok FILE kind/name" or "error FILE kind/name:
// what", and exits 1 when any document fails.

import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import path from "node:path";

const PACKAGE = "@kubernetes-models/prometheus-operator";
const classes = new Map();


async function check(doc) {
  const [group, version] = String(doc.apiVersion).split("/");
  if (group !== "monitoring.coreos.com" || !version || !/^[A-Za-z]+$/.test(doc.kind ?? "")) {
    return [`not a prometheus-operator resource: apiVersion ${doc.apiVersion}, kind ${doc.kind}`];
  }
  const spec = `${PACKAGE}/${group}/${version}/${doc.kind}`;
  let url;
  try {
    url = import.meta.resolve(spec);
  } catch (e) {
    return [`${PACKAGE} has no ${doc.apiVersion} ${doc.kind}: ${e.message}`];
  }
  const Model = (await import(url))[doc.kind];
  const problems = [];
  try {
    new Model(doc).validate();
  } catch (e) {
    problems.push(e.message);
  }
  const dts = fileURLToPath(url).replace(/\.js$/, ".d.ts");
  unknownFields(doc, classOf(dts), "", problems);
  return problems;
}

// The fields of the one class a declaration file declares, and how to find
// the classes of their types: {name, fields: Map(field -> type), file}, or
// null for a file that declares only a type alias (a string union, a
// duration), whose values the validator checks.
function classOf(file) {
  if (classes.has(file)) return classes.get(file);
  const text = readFileSync(file, "utf8");
  const m = text.match(/^export declare class (\w+)[^{]*\{\n([\s\S]*?)^\s{4}constructor\(/m);
  let found = null;
  if (m) {
    const fields = new Map();
    // Members are indented by four spaces; a member's type may span lines.
    const body = m[2].replace(/^\s*\/\*\*[\s\S]*?\*\/\n/gm, "");
    const member = /^ {4}"([^"]+)"\??: ([\s\S]*?);\n(?= {4}\S|$)/gm;
    let f;
    while ((f = member.exec(body)) !== null) fields.set(f[1], f[2].trim());
    const imports = new Map();
    for (const i of text.matchAll(/^import \{ (\w+) \} from "([^"]+)";$/gm)) {
      imports.set(i[1], i[2]);
    }
    found = { name: m[1], fields, imports, file };
  }
  classes.set(file, found);
  return found;
}

// The declaration file an imported type comes from.
function resolveType(cls, typeName) {
  const from = cls.imports.get(typeName);
  if (!from) return null;
  let js;
  if (from.startsWith(".")) {
    js = path.resolve(path.dirname(cls.file), from);
  } else {
    try {
      js = fileURLToPath(import.meta.resolve(from));
    } catch {
      return null;
    }
  }
  return classOf(js.replace(/\.js$/, ".d.ts"));
}

// Checks `value` against the type text `type` of a field of `cls`.
function checkType(value, type, cls, at, problems) {
  const array = type.match(/^Array<(.+)>$/s);
  if (array) {
    if (Array.isArray(value)) {
      value.forEach((v, i) => checkType(v, array[1], cls, `${at}[${i}]`, problems));
    }
    return;
  }
  const map = type.match(/^\{\s*\[key: string\]: ([\s\S]+);\s*\}$/);
  if (map) {
    if (value && typeof value === "object" && !Array.isArray(value)) {
      for (const [k, v] of Object.entries(value)) checkType(v, map[1].trim(), cls, `${at}.${k}`, problems);
    }
    return;
  }
  if (/^\w+$/.test(type) && value && typeof value === "object" && !Array.isArray(value)) {
    const inner = resolveType(cls, type);
    if (inner) unknownFields(value, inner, at, problems);
  }
}

function unknownFields(value, cls, at, problems) {
  if (!cls || !value || typeof value !== "object" || Array.isArray(value)) return;
  for (const [k, v] of Object.entries(value)) {
    const here = at ? `${at}.${k}` : k;
    const type = cls.fields.get(k);
    if (type === undefined) {
      problems.push(`${here}: not a field of ${cls.name} (it has ${[...cls.fields.keys()].join(", ")})`);
    } else {
      checkType(v, type, cls, here, problems);
    }
  }
}

const input = JSON.parse(readFileSync(0, "utf8"));
let failed = false;
for (const { file, doc } of input) {
  const what = `${file} ${String(doc.kind).toLowerCase()}/${doc.metadata?.name}`;
  const problems = await check(doc);
  if (problems.length === 0) {
    console.log(`ok ${what}`);
  } else {
    failed = true;
    for (const p of problems) console.log(`error ${what}: ${p}`);
  }
}
process.exitCode = failed ? 1 : 0;
