#include "common/flags.h"

#include <fstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/subprocess.h"

// Flags of this test program, standing in for a daemon's.
ABSL_FLAG(std::string, test_data_dir, "", "test flag");
ABSL_FLAG(std::string, test_listen, "127.0.0.1:9500", "test flag");
ABSL_FLAG(uint64_t, test_id, 1, "test flag");
ABSL_FLAG(bool, test_join, false, "test flag");

namespace zmesh {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

MATCHER_P3(Setting, name, value, line, "") {
  return arg.name == name && arg.value == value && arg.line == line;
}

class FlagsTest : public ::testing::Test {
 protected:
  // Writes a config file in the test's temp dir and returns its path.
  std::string WriteConfig(const std::string& text, const std::string& name = "test.conf") {
    const std::string path = dir_.path() + "/" + name;
    std::ofstream(path) << text;
    return path;
  }

  testing::TempDir dir_;
  absl::FlagSaver saver_;  // every test starts from the flags' defaults
};

TEST_F(FlagsTest, ParseConfigReadsNameValueLinesAndSkipsCommentsAndBlanks) {
  absl::StatusOr<std::vector<ConfigSetting>> settings = ParseConfig(
      "# a replica\n"
      "\n"
      "id = 2\n"
      "  data-dir=/var/lib/zmesh   # trailing comment\n"
      "raft_listen = 10.0.0.2:9510\r\n"
      "initial-cluster = 1=a:9510,2=b:9510\n"
      "advertise =\n",
      "x.conf");
  ASSERT_TRUE(settings.ok()) << settings.status();
  EXPECT_THAT(
      *settings,
      ElementsAre(Setting("id", "2", 3), Setting("data-dir", "/var/lib/zmesh", 4),
                  Setting("raft_listen", "10.0.0.2:9510", 5),
                  Setting("initial-cluster", "1=a:9510,2=b:9510", 6), Setting("advertise", "", 7)));
}

TEST_F(FlagsTest, ParseConfigKeepsHashesInsideValuesAndQuotes) {
  absl::StatusOr<std::vector<ConfigSetting>> settings =
      ParseConfig("a = x#y\nb = \"  # not a comment \"  # a comment\nc = \"\"\n", "x.conf");
  ASSERT_TRUE(settings.ok()) << settings.status();
  EXPECT_THAT(*settings, ElementsAre(Setting("a", "x#y", 1), Setting("b", "  # not a comment ", 2),
                                     Setting("c", "", 3)));
}

TEST_F(FlagsTest, ParseConfigErrorsNameTheFileAndLine) {
  struct Case {
    std::string text;
    std::string error;
  };
  const Case cases[] = {
      {"id = 1\njoin\n", "d.conf:2: expected `name = value`, got \"join\""},
      {"= 1\n", "d.conf:1: missing the name before `=`"},
      {"\n\n--id = 1\n", "d.conf:3: \"--id\" is not a setting name"},
      {"data dir = x\n", "d.conf:1: \"data dir\" is not a setting name"},
      {"listen = \"127.0.0.1:1\n", "d.conf:1: unterminated quote in the value of listen"},
      {"data-dir = a\n# x\ndata_dir = b\n", "d.conf:3: data_dir is set twice (first on line 1)"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<std::vector<ConfigSetting>> settings = ParseConfig(c.text, "d.conf");
    ASSERT_FALSE(settings.ok()) << c.text;
    EXPECT_EQ(settings.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(settings.status().message(), HasSubstr(c.error)) << c.text;
  }
}

TEST_F(FlagsTest, ApplyConfigFileSetsFlagsSpelledWithDashesOrUnderscores) {
  const std::string path = WriteConfig(
      "test-data-dir = /srv/zmesh\n"
      "test_id = 3\n"
      "test-join = true\n");
  ASSERT_TRUE(ApplyConfigFile(path).ok());
  EXPECT_EQ(absl::GetFlag(FLAGS_test_data_dir), "/srv/zmesh");
  EXPECT_EQ(absl::GetFlag(FLAGS_test_id), 3u);
  EXPECT_TRUE(absl::GetFlag(FLAGS_test_join));
  EXPECT_EQ(absl::GetFlag(FLAGS_test_listen), "127.0.0.1:9500");  // untouched
}

TEST_F(FlagsTest, ApplyConfigFileRejectsUnknownNamesWithFileAndLine) {
  const std::string path = WriteConfig("test-id = 2\n\nno-such-flag = 1\n");
  absl::Status st = ApplyConfigFile(path);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(st.message(), HasSubstr(path + ":3: unknown setting no-such-flag"));
}

TEST_F(FlagsTest, ApplyConfigFileRejectsBadValuesWithFileAndLine) {
  const std::string path = WriteConfig("# replica\ntest-id = two\n");
  absl::Status st = ApplyConfigFile(path);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(st.message(), HasSubstr(path + ":2: bad value \"two\" for test-id"));
  EXPECT_EQ(absl::GetFlag(FLAGS_test_id), 1u);

  const std::string bool_path = WriteConfig("test-join = maybe\n", "bool.conf");
  st = ApplyConfigFile(bool_path);
  EXPECT_THAT(st.message(), HasSubstr(bool_path + ":1: bad value \"maybe\" for test-join"));
}

TEST_F(FlagsTest, ApplyConfigFileRefusesSettingsThatReadOtherFilesOrExit) {
  for (const std::string name : {"config", "flagfile", "fromenv", "help", "version"}) {
    const std::string path = WriteConfig(name + " = x\n");
    absl::Status st = ApplyConfigFile(path);
    EXPECT_THAT(st.message(), HasSubstr(path + ":1: " + name + " cannot be set in a config file"));
  }
}

TEST_F(FlagsTest, ApplyConfigFileReportsAMissingFile) {
  const std::string path = dir_.path() + "/missing.conf";
  absl::Status st = ApplyConfigFile(path);
  EXPECT_EQ(st.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(st.message(), HasSubstr("cannot read config file " + path));
  EXPECT_EQ(ApplyConfigFile(dir_.path()).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(FlagsTest, NormalizeFlagNamesRewritesDashesInNamesOnly) {
  std::vector<std::string> in = {"prog", "--data-dir=/a-b", "--raft-listen", "x-y", "-log-level",
                                 "--",   "--not-a-flag"};
  std::vector<char*> argv;
  for (std::string& s : in) argv.push_back(s.data());
  EXPECT_THAT(NormalizeFlagNames(static_cast<int>(argv.size()), argv.data()),
              ElementsAre("prog", "--data_dir=/a-b", "--raft_listen", "x-y", "-log_level", "--",
                          "--not-a-flag"));
}

// The whole path the daemons take: the file first, then the command line over it, whatever
// the order of the arguments.
TEST_F(FlagsTest, ParseFlagsAppliesTheConfigFileThenTheCommandLineOverIt) {
  const std::string path = WriteConfig(
      "test-data-dir = /from/file\n"
      "test-listen = 0.0.0.0:1\n"
      "test-id = 7\n");
  std::vector<std::string> positional =
      ParseFlags({"prog", "--test_listen", "127.0.0.1:2", "--config", path, "pos", "--test_id=9"});
  EXPECT_THAT(positional, ElementsAre("prog", "pos"));
  EXPECT_EQ(absl::GetFlag(FLAGS_test_data_dir), "/from/file");
  EXPECT_EQ(absl::GetFlag(FLAGS_test_listen), "127.0.0.1:2");
  EXPECT_EQ(absl::GetFlag(FLAGS_test_id), 9u);
}

TEST_F(FlagsTest, ParseFlagsExitsWithStatus2OnABadConfigFile) {
  const std::string path = WriteConfig("test-id = 1\ntest-id = 2\n");
  EXPECT_EXIT(ParseFlags({"prog", "--config=" + path}), ::testing::ExitedWithCode(2),
              HasSubstr("prog: " + path + ":2: test-id is set twice (first on line 1)"));
}

}  // namespace
}  // namespace zmesh
