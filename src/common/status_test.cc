#include "common/status.h"

#include <gtest/gtest.h>

namespace knd {
namespace {

absl::StatusOr<int> Half(int v) {
  if (v % 2) return absl::InvalidArgumentError("odd");
  return v / 2;
}

absl::StatusOr<int> Quarter(int v) {
  ASSIGN_OR_RETURN(int h, Half(v));
  ASSIGN_OR_RETURN(int q, Half(h));
  return q;
}

TEST(StatusTest, MacrosPropagate) {
  EXPECT_EQ(*Quarter(8), 2);
  EXPECT_TRUE(absl::IsInvalidArgument(Quarter(6).status()));
}

TEST(StatusTest, ErrnoMapping) {
  EXPECT_TRUE(absl::IsNotFound(ErrnoToStatus(ENODEV, "link eth9")));
  EXPECT_TRUE(absl::IsAlreadyExists(ErrnoToStatus(EEXIST, "add")));
  EXPECT_EQ(ErrnoToStatus(EPERM, "move").message(), "move: Operation not permitted");
  EXPECT_EQ(Annotate(absl::NotFoundError("x"), "claim a/b").message(), "claim a/b: x");
  EXPECT_TRUE(Annotate(absl::OkStatus(), "ctx").ok());
}

}  // namespace
}  // namespace knd
