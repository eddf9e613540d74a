#include "common/file_util.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>

namespace knd {
namespace {

class FileUtilTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/knd-file-util-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

TEST_F(FileUtilTest, AtomicWriteCreatesParentsAndReplacesContent) {
  std::string path = dir_ + "/a/b/plan.json";
  ASSERT_TRUE(WriteFileAtomic(path, "first").ok());
  ASSERT_TRUE(WriteFileAtomic(path, "second", 0600).ok());
  auto got = ReadFile(path);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, "second");
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // No temp files are left behind.
  int entries = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir_ + "/a/b"))
    ++entries;
  EXPECT_EQ(entries, 1);
}

TEST_F(FileUtilTest, ReadMissingIsNotFound) {
  auto got = ReadFile(dir_ + "/nope");
  EXPECT_TRUE(absl::IsNotFound(got.status())) << got.status();
}

TEST_F(FileUtilTest, RemoveIsIdempotent) {
  std::string path = dir_ + "/x";
  ASSERT_TRUE(WriteFileAtomic(path, "x").ok());
  EXPECT_TRUE(RemoveFile(path).ok());
  EXPECT_TRUE(RemoveFile(path).ok());
  EXPECT_FALSE(std::filesystem::exists(path));
}

}  // namespace
}  // namespace knd
