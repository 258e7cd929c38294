// Decode and encode throughput of the IAB reference libraries on Candor's
// conformance vectors: `@iabtechlabtcf/core` for TC strings, `@iabgpp/cmpapi`
// for GPP strings. `candor-bench codec` runs this beside Candor's own codec on
// the same strings and prints the ratios; it can also be run alone:
//
//   node bench/codec-ref/bench.mjs [--vectors DIR] [--min-strings N] [--seconds S]
//
// Prints one JSON object on stdout:
//   {"tcf":{"decode_per_s":..,"encode_per_s":..,"encode_bits_per_s":..},
//    "gpp":{"decode_per_s":..,"encode_per_s":..},"strings":{"tcf":N,"gpp":M},
//    "unique":{..},"roundtrip_identical":{..},"node":"v..","libraries":{..}}
// Progress and notes go to stderr.
//
// What is timed, and why:
// - TCF decode: `TCString.decode(s)`, which fills a whole TCModel eagerly.
// - TCF encode: `TCString.encode(model)` of the decoded models, default
//   options. The library refuses a model without a GVL ("Unable to encode
//   TCModel without a GVL"): its encoder first runs a semantic pass that clones
//   the model and its GVL and drops vendor bits and publisher restrictions the
//   GVL does not back. No GVL can be downloaded here, so each model gets a
//   synthetic in-memory one (`new GVL(vendorListJson)`, no network) that
//   declares every purpose on every legal basis, as flexible, for every vendor
//   the model mentions: nothing is dropped. It also lists one id inside each
//   gap of a publisher restriction's vendor list, because the encoder lets a
//   restriction range run across ids missing from the GVL, which would change
//   the string. That is the smallest GVL with which the library reproduces the
//   strings (823 vendors on average over the vectors, 2821 at most), and its
//   entries carry nothing else (no names, URLs, retention or data
//   declarations): the clone on every call costs as little as it can, where a
//   real GVL (over a thousand fuller entries) would cost more. The vectors are
//   all service-specific, for which the default options write core, disclosed
//   vendors and publisher TC, as in the strings.
// - TCF encode, bits only (`encode_bits_per_s`): the same strings from
//   `SegmentEncoder.encode(model, segment)` per segment, joined with '.', which
//   is what `TCString.encode` does after its semantic pass. No GVL clone: the
//   strictest comparison for Candor's encoder, which has no GVL pass either.
// - GPP decode: `new GppModel(s).toObject()`. GppModel is lazy at three levels
//   (the model keeps the string, sections keep segment strings, segments keep
//   their bits until a field is read); `toObject()` reads every field of every
//   section, which is what a full decode means.
// - GPP encode: `model.encode()` of the decoded models. It returns its cached
//   string unless something changed, and `setFieldValue` would change the
//   strings (the tcfeuv2 section re-stamps Created/LastUpdated), so before each
//   call the cached strings of the model, its sections and their segments are
//   cleared: every call really re-encodes every field.
// Before timing, every decoded model is encoded once and compared with its
// string; the counts of identical re-encodings are reported
// (`roundtrip_identical`) and each mismatch is noted on stderr. The GPP
// library's own TCF-in-GPP encoder picks range or bitfield vendor encoding
// differently from `@iabtechlabtcf/core` (which wrote the vectors' tcfeuv2
// sections) in a few cases, so it does not reproduce every GPP vector; the
// work it does per call is the same either way.
//
// Timing: the vectors are repeated to at least --min-strings per format and
// worked through in order, whole cycles of the unique vectors at a time (so
// every vector weighs the same even when an operation is slow): warm-up for at
// least half of --seconds, then timed for at least --seconds.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GVL, SegmentEncoder, SegmentSequence, TCString } from '@iabtechlabtcf/core';
import { GppModel } from '@iabgpp/cmpapi';

const here = dirname(fileURLToPath(import.meta.url));

function parseArgs(argv) {
  const opts = {
    vectors: join(here, '..', '..', '..', 'shared', 'vectors'),
    minStrings: 10000,
    seconds: 1.0,
  };
  for (let i = 0; i < argv.length; i++) {
    const value = argv[i + 1];
    switch (argv[i]) {
      case '--vectors': opts.vectors = value; i++; break;
      case '--min-strings': opts.minStrings = Number(value); i++; break;
      case '--seconds': opts.seconds = Number(value); i++; break;
      default: throw new Error(`unknown argument ${argv[i]}`);
    }
  }
  if (!(opts.minStrings > 0) || !(opts.seconds > 0)) {
    throw new Error('--min-strings and --seconds must be positive');
  }
  return opts;
}

function load(dir, file, key) {
  const entries = JSON.parse(readFileSync(join(dir, file), 'utf8'));
  const strings = entries.map((e) => e[key]);
  if (strings.length === 0 || strings.some((s) => typeof s !== 'string')) {
    throw new Error(`${file}: expected an array of objects with a string "${key}"`);
  }
  return strings;
}

/** Repeats `items` whole until there are at least `min` of them. */
function repeat(items, min) {
  const rounds = Math.ceil(min / items.length);
  const out = [];
  for (let r = 0; r < rounds; r++) out.push(...items);
  return out;
}

let sink = 0;

/**
 * Runs `op` over `items` in order (wrapping around), `cycle` items between
 * looks at the clock: warm-up for at least `seconds / 2`, then timed for at
 * least `seconds`. Returns items per second of the timed part.
 */
function rate(label, items, cycle, op, seconds) {
  let next = 0;
  const chunk = () => {
    for (let n = 0; n < cycle; n++) {
      const r = op(items[next]);
      sink += r === undefined || r === null ? 0 : 1;
      next = next + 1 === items.length ? 0 : next + 1;
    }
  };
  const run = (ns) => {
    const start = process.hrtime.bigint();
    let done = 0;
    let elapsed;
    do {
      chunk();
      done += cycle;
      elapsed = process.hrtime.bigint() - start;
    } while (elapsed < ns);
    return [done, Number(elapsed) / 1e9];
  };
  run(BigInt(Math.round((seconds / 2) * 1e9)));
  const [done, secs] = run(BigInt(Math.round(seconds * 1e9)));
  const perS = done / secs;
  process.stderr.write(`ref ${label}: ${done} strings in ${secs.toFixed(2)} s = ${perS.toFixed(0)}/s\n`);
  return perS;
}

/** 1 if `got` is `want`, else 0 after a one-line note on stderr. */
function sameOrReport(what, i, got, want) {
  if (got === want) return 1;
  let at = 0;
  while (at < got.length && at < want.length && got[at] === want[at]) at++;
  const context = (s) => s.slice(Math.max(0, at - 8), at + 16);
  process.stderr.write(
    `ref: ${what} of vector #${i} differs from the vector from char ${at} on: ` +
    `got ...${context(got)}..., want ...${context(want)}...\n`,
  );
  return 0;
}

// ---- TCF ----

const PURPOSES = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];

/**
 * The vendor ids the synthetic GVL of a decoded model must list: every vendor
 * the model mentions, plus one id inside each gap of each publisher
 * restriction's (sorted) vendor list, so that no restriction range is bridged.
 */
function gvlVendorIds(model) {
  const ids = new Set();
  const add = (vector) => vector.forEach((has, id) => { if (has) ids.add(id); });
  add(model.vendorConsents);
  add(model.vendorLegitimateInterests);
  add(model.vendorsDisclosed);
  add(model.vendorsAllowed);
  const restrictions = model.publisherRestrictions;
  for (const pr of restrictions.getRestrictions()) {
    const vendors = restrictions.getVendors(pr);
    vendors.forEach((id, i) => {
      ids.add(id);
      if (i + 1 < vendors.length && vendors[i + 1] > id + 1) ids.add(id + 1);
    });
  }
  return ids;
}

/**
 * A minimal in-memory GVL of `ids`, each declaring every purpose on every
 * legal basis. With a GVL set, a TCModel reports the GVL's vendorListVersion
 * and tcfPolicyVersion, so these are the model's own.
 */
function syntheticGvl(ids, vendorListVersion, tcfPolicyVersion) {
  const named = (list) => Object.fromEntries(list.map((id) => [id, { id, name: `p${id}`, description: '' }]));
  const vendors = {};
  for (const id of ids) {
    vendors[id] = {
      id,
      name: `v${id}`,
      purposes: PURPOSES,
      legIntPurposes: PURPOSES,
      flexiblePurposes: PURPOSES,
      specialPurposes: [],
      features: [],
      specialFeatures: [],
    };
  }
  return new GVL({
    gvlSpecificationVersion: 3,
    vendorListVersion,
    tcfPolicyVersion,
    lastUpdated: '2024-01-01T00:00:00Z',
    purposes: named(PURPOSES),
    specialPurposes: named([1, 2, 3]),
    features: named([1, 2, 3]),
    specialFeatures: named([1, 2]),
    stacks: {},
    vendors,
  });
}

/** The segments `TCString.encode` writes for this model with default options. */
const tcfSegments = new Map();

/** `TCString.encode` without its semantic pass (and so without GVL clone). */
function tcfEncodeBits(model) {
  const segments = tcfSegments.get(model);
  let out = SegmentEncoder.encode(model, segments[0]);
  for (let i = 1; i < segments.length; i++) out += '.' + SegmentEncoder.encode(model, segments[i]);
  return out;
}

/** Decoded models ready to encode, and how many re-encode identically. */
function tcfModels(strings) {
  let identical = 0;
  let identicalBits = 0;
  const models = strings.map((s, i) => {
    const model = TCString.decode(s);
    // Set before encoding so the publisher-restriction filter runs once here.
    model.gvl = syntheticGvl(gvlVendorIds(model), model.vendorListVersion, model.policyVersion);
    tcfSegments.set(model, new SegmentSequence(model)[String(model.version)]);
    identical += sameOrReport('TCString.encode', i, TCString.encode(model), s);
    identicalBits += sameOrReport('SegmentEncoder.encode', i, tcfEncodeBits(model), s);
    return model;
  });
  return { models, identical, identicalBits };
}

// ---- GPP ----

function gppDecode(s) {
  const model = new GppModel(s);
  model.toObject();
  return model;
}

/** Drops every cached encoding so the next `encode()` re-encodes all fields. */
function invalidate(model) {
  model.encodedString = null;
  model.dirty = true;
  for (const section of model.sections.values()) {
    section.encodedString = null;
    section.dirty = true;
    for (const segment of section.segments) {
      segment.encodedString = null;
      segment.dirty = true;
    }
  }
}

function gppEncode(model) {
  invalidate(model);
  return model.encode();
}

/** Decoded models ready to encode, and how many re-encode identically. */
function gppModels(strings) {
  let identical = 0;
  const models = strings.map((s, i) => {
    const model = gppDecode(s);
    identical += sameOrReport('GppModel.encode', i, gppEncode(model), s);
    return model;
  });
  return { models, identical };
}

// ---- main ----

function packageVersion(name) {
  return JSON.parse(readFileSync(join(here, 'node_modules', name, 'package.json'), 'utf8')).version;
}

const opts = parseArgs(process.argv.slice(2));
const tcfUnique = load(opts.vectors, 'tcf-v2.json', 'tcString');
const gppUnique = load(opts.vectors, 'gpp.json', 'gppString');

const tcf = tcfModels(tcfUnique);
const gpp = gppModels(gppUnique);

const tcfStrings = repeat(tcfUnique, opts.minStrings);
const gppStrings = repeat(gppUnique, opts.minStrings);
const tcfModelList = repeat(tcf.models, opts.minStrings);
const gppModelList = repeat(gpp.models, opts.minStrings);
const tcfCycle = tcfUnique.length;
const gppCycle = gppUnique.length;

const result = {
  tcf: {
    decode_per_s: rate('tcf decode', tcfStrings, tcfCycle, (s) => TCString.decode(s), opts.seconds),
    encode_per_s: rate('tcf encode', tcfModelList, tcfCycle, (m) => TCString.encode(m), opts.seconds),
    encode_bits_per_s: rate('tcf encode (bits only)', tcfModelList, tcfCycle, tcfEncodeBits, opts.seconds),
  },
  gpp: {
    decode_per_s: rate('gpp decode', gppStrings, gppCycle, gppDecode, opts.seconds),
    encode_per_s: rate('gpp encode', gppModelList, gppCycle, gppEncode, opts.seconds),
  },
  strings: { tcf: tcfStrings.length, gpp: gppStrings.length },
  unique: { tcf: tcfUnique.length, gpp: gppUnique.length },
  roundtrip_identical: { tcf: tcf.identical, tcf_bits: tcf.identicalBits, gpp: gpp.identical },
  node: process.version,
  libraries: {
    '@iabtechlabtcf/core': packageVersion('@iabtechlabtcf/core'),
    '@iabgpp/cmpapi': packageVersion('@iabgpp/cmpapi'),
  },
  sink,
};

process.stdout.write(JSON.stringify(result) + '\n');
