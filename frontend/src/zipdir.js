// @ts-check
/* SUA Portal: the directory of a zip file read in the browser, without unpacking it. Only the end of the file
 * (the central directory) is read, in slices, so a zip of many gigabytes costs a few kilobytes; one small entry
 * (a manifest) can be read whole, stored or deflated (the browser's own DecompressionStream). Zip64 is read. */

const EOCD = 0x06054b50;
const EOCD64_LOCATOR = 0x07064b50;
const EOCD64 = 0x06064b50;
const CENTRAL = 0x02014b50;
const LOCAL = 0x04034b50;
const MAX_COMMENT = 0xffff;

/**
 * One file in a zip.
 * @typedef {{ path: string, size: number, compressedSize: number, method: number, offset: number }} ZipEntry
 */

/**
 * @param {Blob} blob
 * @param {number} start
 * @param {number} end
 * @returns {Promise<DataView>}
 */
async function slice(blob, start, end) {
  return new DataView(await blob.slice(start, end).arrayBuffer());
}

/**
 * A 64-bit little-endian number (exact up to 2^53).
 * @param {DataView} view
 * @param {number} at
 */
function u64(view, at) {
  return view.getUint32(at, true) + view.getUint32(at + 4, true) * 2 ** 32;
}

/**
 * A name as the zip wrote it: UTF-8 when it says so (bit 11) or when the bytes are valid UTF-8, else Latin-1.
 * @param {Uint8Array} bytes
 * @param {number} flags
 */
function decodeName(bytes, flags) {
  try {
    return new TextDecoder("utf-8", { fatal: (flags & 0x800) === 0 }).decode(bytes);
  } catch {
    return new TextDecoder("latin1").decode(bytes);
  }
}

/**
 * The files of a zip (folders left out), from its central directory.
 * @param {Blob} file
 * @returns {Promise<ZipEntry[]>}
 */
export async function readZipDirectory(file) {
  const tailStart = Math.max(0, file.size - (22 + MAX_COMMENT));
  const tail = await slice(file, tailStart, file.size);
  let at = -1;
  for (let i = tail.byteLength - 22; i >= 0; i--) {
    if (tail.getUint32(i, true) === EOCD) { at = i; break; }
  }
  if (at < 0) throw new Error(file instanceof File ? file.name + " is not a zip file." : "Not a zip file.");
  let count = tail.getUint16(at + 10, true);
  let size = tail.getUint32(at + 12, true);
  let offset = tail.getUint32(at + 16, true);
  if (count === 0xffff || size === 0xffffffff || offset === 0xffffffff) {
    const locatorAt = tailStart + at - 20;
    const locator = await slice(file, locatorAt, locatorAt + 20);
    if (locator.getUint32(0, true) !== EOCD64_LOCATOR) throw new Error("The zip's Zip64 directory is missing.");
    const recordAt = u64(locator, 8);
    const record = await slice(file, recordAt, recordAt + 56);
    if (record.getUint32(0, true) !== EOCD64) throw new Error("The zip's Zip64 directory cannot be read.");
    count = u64(record, 32);
    size = u64(record, 40);
    offset = u64(record, 48);
  }
  const directory = await slice(file, offset, offset + size);
  /** @type {ZipEntry[]} */
  const entries = [];
  let p = 0;
  for (let n = 0; n < count; n++) {
    if (p + 46 > directory.byteLength || directory.getUint32(p, true) !== CENTRAL) {
      throw new Error("The zip's directory is damaged.");
    }
    const flags = directory.getUint16(p + 8, true);
    const method = directory.getUint16(p + 10, true);
    let compressedSize = directory.getUint32(p + 20, true);
    let entrySize = directory.getUint32(p + 24, true);
    const nameLength = directory.getUint16(p + 28, true);
    const extraLength = directory.getUint16(p + 30, true);
    const commentLength = directory.getUint16(p + 32, true);
    let localOffset = directory.getUint32(p + 42, true);
    const name = decodeName(new Uint8Array(directory.buffer, directory.byteOffset + p + 46, nameLength), flags);
    // Zip64: the sizes and offset that did not fit are in the extra field 0x0001, in this order.
    let e = p + 46 + nameLength;
    const extraEnd = e + extraLength;
    while (e + 4 <= extraEnd) {
      const id = directory.getUint16(e, true);
      const length = directory.getUint16(e + 2, true);
      if (id === 0x0001) {
        let q = e + 4;
        if (entrySize === 0xffffffff) { entrySize = u64(directory, q); q += 8; }
        if (compressedSize === 0xffffffff) { compressedSize = u64(directory, q); q += 8; }
        if (localOffset === 0xffffffff) { localOffset = u64(directory, q); }
      }
      e += 4 + length;
    }
    if (!name.endsWith("/")) {
      entries.push({ path: name, size: entrySize, compressedSize: compressedSize, method: method, offset: localOffset });
    }
    p = extraEnd + commentLength;
  }
  return entries;
}

/**
 * The text of one small entry (stored or deflated).
 * @param {Blob} file
 * @param {ZipEntry} entry
 * @returns {Promise<string>}
 */
export async function readZipText(file, entry) {
  const header = await slice(file, entry.offset, entry.offset + 30);
  if (header.getUint32(0, true) !== LOCAL) throw new Error(entry.path + ": the zip is damaged here.");
  const start = entry.offset + 30 + header.getUint16(26, true) + header.getUint16(28, true);
  const data = file.slice(start, start + entry.compressedSize);
  if (entry.method === 0) return data.text();
  if (entry.method !== 8) throw new Error(entry.path + ": compressed in a way the browser cannot read.");
  const stream = data.stream().pipeThrough(new DecompressionStream("deflate-raw"));
  return new Response(stream).text();
}
