// The daemons read their flags from a config file (--config FILE, common/flags.h) and the
// command line overrides it: real zmesh-directory and zmesh-proxy processes started the way the
// systemd units and the Helm chart start them.
#include <signal.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/cluster_process.h"
#include "tests/support/subprocess.h"

namespace zmesh {
namespace {

using testing::BinPath;
using testing::CommandResult;
using testing::Eventually;
using ::testing::HasSubstr;
using testing::PickFreePort;
using testing::RunCommand;
using testing::Subprocess;
using testing::TailFile;
using testing::TempDir;

bool Exists(const std::string& path) {
  std::error_code ec;
  return std::filesystem::exists(path, ec);
}

std::string Slurp(const std::string& path) { return testing::ReadFile(path).value_or(""); }

class ConfigFileTest : public ::testing::Test {
 protected:
  std::string Write(const std::string& name, const std::string& text) {
    const std::string path = absl::StrCat(dir_.path(), "/", name);
    std::ofstream(path) << text;
    return path;
  }

  // SIGTERM and expect the clean exit the daemons promise.
  void StopCleanly(Subprocess& process, const std::string& log) {
    process.Signal(SIGTERM);
    absl::StatusOr<int> status = process.Wait(10000);
    ASSERT_TRUE(status.ok()) << status.status();
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
        << testing::DescribeWaitStatus(*status) << "\n"
        << TailFile(log);
  }

  TempDir dir_;
};

TEST_F(ConfigFileTest, DaemonsStartFromConfigFilesAndTheCommandLineOverridesThem) {
  absl::StatusOr<int> raft_port = PickFreePort();
  ASSERT_TRUE(raft_port.ok()) << raft_port.status();
  const std::string raft = absl::StrCat("127.0.0.1:", *raft_port);
  // Spelled as an operator would: dashes and underscores, comments, a quoted value.
  const std::string directory_conf =
      Write("zmesh-directory.conf", absl::StrCat("# replica 1 of a one-member cluster\n"
                                                 "id = 1\n"
                                                 "data-dir = ",
                                                 dir_.path(),
                                                 "/data\n"
                                                 "listen = 127.0.0.1:0\n"
                                                 "raft_listen = \"",
                                                 raft,
                                                 "\"\n"
                                                 "initial-cluster = 1=",
                                                 raft,
                                                 "   # itself only\n"
                                                 "ready-file = ",
                                                 dir_.path(),
                                                 "/from-file.ready\n"
                                                 "log-level = debug\n"));
  const std::string directory_log = absl::StrCat(dir_.path(), "/directory.log");
  absl::StatusOr<std::unique_ptr<Subprocess>> directory =
      Subprocess::Start({BinPath("zmesh-directory"), "--config", directory_conf, "--ready-file",
                         absl::StrCat(dir_.path(), "/from-flag.ready")},
                        directory_log, directory_log);
  ASSERT_TRUE(directory.ok()) << directory.status();
  const std::string directory_ready = absl::StrCat(dir_.path(), "/from-flag.ready");
  ASSERT_TRUE(Eventually([&] { return Exists(directory_ready); }, 15000))
      << TailFile(directory_log);
  EXPECT_FALSE(Exists(absl::StrCat(dir_.path(), "/from-file.ready")));
  EXPECT_TRUE(Exists(absl::StrCat(dir_.path(), "/data/directory.db")));
  std::string address = Slurp(directory_ready);
  if (!address.empty() && address.back() == '\n') address.pop_back();
  ASSERT_TRUE(absl::StartsWith(address, "127.0.0.1:")) << address;
  // log-level = debug from the file took effect.
  EXPECT_THAT(Slurp(directory_log), HasSubstr(" D ")) << TailFile(directory_log);

  const std::string ipc_dir = absl::StrCat(dir_.path(), "/ipc");
  const std::string proxy_conf =
      Write("zmesh-proxy.conf",
            absl::StrCat("directory = ", address,
                         "\n"
                         "node-name = from-file\n"
                         "advertise-host = 127.0.0.1\n"
                         "bind = 127.0.0.1\n"
                         "call-port = 0\nfanout-port = 0\nnotify-port = 0\ncast-port = 0\n"
                         "ipc_dir = ",
                         ipc_dir,
                         "\n"
                         "lease-ttl-ms = 3000\n"
                         "ready-file = ",
                         dir_.path(), "/proxy.ready\n"));
  const std::string proxy_log = absl::StrCat(dir_.path(), "/proxy.log");
  absl::StatusOr<std::unique_ptr<Subprocess>> proxy =
      Subprocess::Start({BinPath("zmesh-proxy"), "--node-name=from-flag", "--config=" + proxy_conf},
                        proxy_log, proxy_log);
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  const std::string proxy_ready = absl::StrCat(dir_.path(), "/proxy.ready");
  ASSERT_TRUE(Eventually([&] { return Exists(proxy_ready); }, 15000)) << TailFile(proxy_log);
  EXPECT_THAT(Slurp(proxy_ready), HasSubstr("call="));
  EXPECT_TRUE(Exists(ipc_dir + "/control.sock"));

  absl::StatusOr<CommandResult> nodes =
      RunCommand({BinPath("zmeshctl"), "--directory", address, "-o", "json", "nodes", "list"});
  ASSERT_TRUE(nodes.ok()) << nodes.status();
  ASSERT_EQ(nodes->exit_code, 0) << nodes->err;
  EXPECT_THAT(nodes->out, HasSubstr("\"from-flag\""));
  EXPECT_THAT(nodes->out, ::testing::Not(HasSubstr("from-file")));
  EXPECT_THAT(nodes->out, HasSubstr("127.0.0.1"));

  StopCleanly(**proxy, proxy_log);
  StopCleanly(**directory, directory_log);
}

TEST_F(ConfigFileTest, ABadConfigFileStopsEachDaemonWithFileLineAndStatus2) {
  struct Case {
    std::string daemon;
    std::string text;
    std::string error;
  };
  const std::string data_dir = absl::StrCat(dir_.path(), "/data");
  const Case cases[] = {
      {"zmesh-directory", "data-dir = " + data_dir + "\nid = one\n",
       ":2: bad value \"one\" for id"},
      {"zmesh-directory", "# proxy setting in the wrong file\ndirectory = a:9500\n",
       ":2: unknown setting directory"},
      {"zmesh-proxy", "directory = 127.0.0.1:9500\nlease-ttl-ms = 10s\n",
       ":2: bad value \"10s\" for lease-ttl-ms"},
      {"zmesh-proxy", "directory = 127.0.0.1:9500\ncall-port 9501\n",
       ":2: expected `name = value`"},
  };
  for (const Case& c : cases) {
    const std::string conf = Write("bad.conf", c.text);
    absl::StatusOr<CommandResult> run = RunCommand({BinPath(c.daemon), "--config", conf}, 10000);
    ASSERT_TRUE(run.ok()) << run.status();
    EXPECT_EQ(run->exit_code, 2) << c.daemon << " " << c.text << "\n" << run->err;
    EXPECT_THAT(run->err, HasSubstr(absl::StrCat(c.daemon, ": ", conf, c.error)));
  }
  EXPECT_FALSE(Exists(data_dir)) << "a daemon started despite a bad config file";

  absl::StatusOr<CommandResult> missing = RunCommand(
      {BinPath("zmesh-proxy"), "--config", absl::StrCat(dir_.path(), "/none.conf")}, 10000);
  ASSERT_TRUE(missing.ok()) << missing.status();
  EXPECT_EQ(missing->exit_code, 2);
  EXPECT_THAT(missing->err, HasSubstr("cannot read config file"));
}

// deploy/config/*.conf are what the systemd units read and what docs/deploy.md shows: every
// setting in them must be a flag of its daemon with a valid value.
TEST_F(ConfigFileTest, ShippedExampleConfigsAreAcceptedByTheirDaemons) {
  const char* source_dir = std::getenv("ZMESH_SOURCE_DIR");
  ASSERT_NE(source_dir, nullptr) << "ZMESH_SOURCE_DIR is set by ctest";
  const std::string examples[][2] = {
      {"zmesh-directory", "deploy/config/zmesh-directory.conf"},
      {"zmesh-proxy", "deploy/config/zmesh-proxy.conf"},
      {"zmesh-directory", "deploy/config/examples/ctl1/zmesh-directory.conf"},
      {"zmesh-directory", "deploy/config/examples/ctl2/zmesh-directory.conf"},
      {"zmesh-directory", "deploy/config/examples/ctl3/zmesh-directory.conf"},
  };
  for (const auto& [daemon, file] : examples) {
    const std::string path = absl::StrCat(source_dir, "/", file);
    ASSERT_TRUE(Exists(path)) << path;
    absl::StatusOr<CommandResult> run =
        RunCommand({BinPath(daemon), "--config", path, "--only_check_args"}, 10000);
    ASSERT_TRUE(run.ok()) << run.status();
    EXPECT_EQ(run->exit_code, 0) << daemon << " " << path << "\n" << run->err;
  }
}

}  // namespace
}  // namespace zmesh
