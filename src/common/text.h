// Strings that leave the process as JSON (ResourceSlices, claim status, events, state files,
// CLI output), and fields read from JSON that came from outside. Interface names and other strings
// from the kernel are bytes, not UTF-8: a NIC renamed inside a pod can come back with any bytes but
// '/' and NUL, and nlohmann::json throws on invalid UTF-8 when it serialises. These helpers never
// throw.
#pragma once

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace knd {

// `s` with every byte that is not part of a valid UTF-8 sequence (overlong forms, surrogates
// and code points above U+10FFFF included) replaced by U+FFFD; valid input comes back as is.
std::string ValidUtf8(std::string_view s);

// At most `max_bytes` of `s`, cut at a character boundary (never inside a UTF-8 sequence).
std::string ClampUtf8(std::string_view s, size_t max_bytes);

// j.dump(indent), with invalid UTF-8 in strings replaced by U+FFFD instead of throwing.
std::string DumpJson(const nlohmann::json& j, int indent = -1);

// Reading JSON from outside (the API server, NADs, claims, CNI plugins, files on disk) without
// exceptions: j[key] when `j` is an object and j[key] has the wanted type, else `def`.
// nlohmann's j.value(key, def) throws type_error when the key holds another type.
std::string JsonString(const nlohmann::json& j, std::string_view key, std::string_view def = {});
bool JsonBool(const nlohmann::json& j, std::string_view key, bool def);

// FNV-1a 64-bit hash: stable names and MACs derived from strings (device names, claim UIDs).
uint64_t Fnv1a64(std::string_view s);

}  // namespace knd
