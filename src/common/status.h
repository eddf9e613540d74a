// Status helpers used by every layer: propagate absl::Status / absl::StatusOr with
// RETURN_IF_ERROR / ASSIGN_OR_RETURN, and turn errno into a Status with context.
//
// Error philosophy (docs/ARCHITECTURE.md): failures the environment can cause (a missing
// device, a refused syscall, a bad config) are returned as a Status with enough context to
// act on; broken invariants abort. The lowest layer attaches the syscall/libnl context, the
// orchestration layer adds the pod/claim/device identity and logs once.
#pragma once

#include <cerrno>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace knd {

// Maps an errno value to the closest canonical code, with "<what>: <strerror>" as message.
absl::Status ErrnoToStatus(int err, std::string_view what);

// Same as ErrnoToStatus(errno, what).
inline absl::Status ErrnoStatus(std::string_view what) { return ErrnoToStatus(errno, what); }

// Returns `s` with `context + ": "` prepended to its message; OK stays OK.
absl::Status Annotate(const absl::Status& s, std::string_view context);

}  // namespace knd

#define KND_CONCAT_INNER_(a, b) a##b
#define KND_CONCAT_(a, b) KND_CONCAT_INNER_(a, b)

#define RETURN_IF_ERROR(expr)                  \
  do {                                         \
    ::absl::Status knd_status_ = (expr);       \
    if (!knd_status_.ok()) return knd_status_; \
  } while (0)

#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL_(KND_CONCAT_(knd_statusor_, __LINE__), lhs, expr)

// `lhs` may be a declaration (`auto x`) and `tmp` is an identifier: neither can take
// parentheses.
#define ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr)                                 \
  auto tmp = (expr);                  /* NOLINT(bugprone-macro-parentheses) */ \
  if (!tmp.ok()) return tmp.status(); /* NOLINT(bugprone-macro-parentheses) */ \
  lhs = std::move(tmp).value()        /* NOLINT(bugprone-macro-parentheses) */
