#include "common/status.h"

#include <cstring>
#include <string>

namespace knd {

absl::Status ErrnoToStatus(int err, std::string_view what) {
  std::string msg = std::string(what) + ": " + std::strerror(err);
  switch (err) {
    case 0:
      return absl::OkStatus();
    case ENOENT:
    case ENODEV:
    case ESRCH:
    case ENXIO:
      return absl::NotFoundError(msg);
    case EEXIST:
    case EADDRINUSE:
      return absl::AlreadyExistsError(msg);
    case EPERM:
    case EACCES:
      return absl::PermissionDeniedError(msg);
    case EINVAL:
    case ERANGE:
    case ENAMETOOLONG:
      return absl::InvalidArgumentError(msg);
    case EBUSY:
    case EAGAIN:
    case EINTR:
      return absl::UnavailableError(msg);
    case EOPNOTSUPP:
    case ENOSYS:
    case EAFNOSUPPORT:
    case EPROTONOSUPPORT:
      return absl::UnimplementedError(msg);
    case ETIMEDOUT:
      return absl::DeadlineExceededError(msg);
    default:
      return absl::InternalError(msg);
  }
}

absl::Status Annotate(const absl::Status& s, std::string_view context) {
  if (s.ok()) return s;
  return absl::Status(s.code(), std::string(context) + ": " + std::string(s.message()));
}

}  // namespace knd
