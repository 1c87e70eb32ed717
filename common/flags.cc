#include "common/flags.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <system_error>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

ABSL_FLAG(std::string, config, "",
          "Read flags from this file first (`name = value` lines, # comments; see "
          "docs/deploy.md); flags on the command line override it.");

namespace zmesh {
namespace {

// Names a config file may not set: the file itself, absl's own ways of reading flags from
// elsewhere, and the flags that print help and exit.
constexpr const char* kNotInConfig[] = {
    "config",   "flagfile",  "fromenv",     "tryfromenv",      "undefok",   "help",
    "helpfull", "helpshort", "helppackage", "only_check_args", "helpmatch", "version",
};

std::string Underscored(std::string name) {
  std::replace(name.begin(), name.end(), '-', '_');
  return name;
}

bool IsNameChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_';
}

// The line without its comment: a `#` at the start or after a blank, outside double quotes.
absl::string_view StripComment(absl::string_view line) {
  bool quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (c == '"') quoted = !quoted;
    if (c == '#' && !quoted &&
        (i == 0 || absl::ascii_isblank(static_cast<unsigned char>(line[i - 1])))) {
      return line.substr(0, i);
    }
  }
  return line;
}

// The value of --config in normalized args ("" when there is none); the last one wins, as for
// any flag. Skips the values of other flags given as a separate argument ("--listen X").
std::string FindConfigPath(const std::vector<std::string>& args) {
  std::string path;
  for (size_t i = 1; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--") break;
    if (arg.size() < 2 || arg[0] != '-') continue;
    const std::string body = arg.substr(arg[1] == '-' ? 2 : 1);
    const size_t eq = body.find('=');
    const std::string name = body.substr(0, eq);
    if (name == "config") {
      if (eq != std::string::npos) {
        path = body.substr(eq + 1);
      } else if (i + 1 < args.size()) {
        path = args[++i];
      }
      continue;
    }
    if (eq != std::string::npos) continue;
    const absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    if (flag != nullptr && !flag->IsOfType<bool>()) ++i;
  }
  return path;
}

}  // namespace

std::vector<std::string> NormalizeFlagNames(int argc, char** argv) {
  std::vector<std::string> args(argv, argv + argc);
  for (size_t i = 1; i < args.size(); ++i) {
    std::string& arg = args[i];
    if (arg == "--") break;
    if (arg.size() < 3 || arg[0] != '-') continue;
    const size_t start = arg[1] == '-' ? 2 : 1;
    const size_t end = std::min(arg.find('='), arg.size());
    std::replace(arg.begin() + static_cast<std::ptrdiff_t>(start),
                 arg.begin() + static_cast<std::ptrdiff_t>(end), '-', '_');
  }
  return args;
}

absl::StatusOr<std::vector<ConfigSetting>> ParseConfig(absl::string_view text,
                                                       absl::string_view file_name) {
  std::vector<ConfigSetting> settings;
  std::map<std::string, int> first_line;  // underscored name -> line it was set on
  int number = 0;
  for (absl::string_view raw : absl::StrSplit(text, '\n')) {
    ++number;
    auto error = [&](absl::string_view what) {
      return absl::InvalidArgumentError(absl::StrCat(file_name, ":", number, ": ", what));
    };
    const absl::string_view line = absl::StripAsciiWhitespace(StripComment(raw));
    if (line.empty()) continue;
    const size_t eq = line.find('=');
    if (eq == absl::string_view::npos) {
      return error(absl::StrCat("expected `name = value`, got \"", line, "\""));
    }
    const absl::string_view name = absl::StripAsciiWhitespace(line.substr(0, eq));
    absl::string_view value = absl::StripAsciiWhitespace(line.substr(eq + 1));
    if (name.empty()) return error("missing the name before `=`");
    if (!std::all_of(name.begin(), name.end(), IsNameChar) || name[0] == '-') {
      return error(absl::StrCat("\"", name,
                                "\" is not a setting name (flag names without the leading "
                                "dashes, e.g. data-dir)"));
    }
    if (!value.empty() && value.front() == '"') {
      if (value.size() < 2 || value.back() != '"') {
        return error(absl::StrCat("unterminated quote in the value of ", name));
      }
      value = value.substr(1, value.size() - 2);
    }
    auto [it, inserted] = first_line.emplace(Underscored(std::string(name)), number);
    if (!inserted) {
      return error(absl::StrCat(name, " is set twice (first on line ", it->second, ")"));
    }
    settings.push_back(ConfigSetting{std::string(name), std::string(value), number});
  }
  return settings;
}

absl::Status ApplyConfigFile(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot read config file ", path, ": it is a directory"));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;
    const std::string message =
        absl::StrCat("cannot read config file ", path, ": ", std::strerror(err));
    if (err == ENOENT) return absl::NotFoundError(message);
    if (err == EACCES) return absl::PermissionDeniedError(message);
    return absl::InvalidArgumentError(message);
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return absl::InvalidArgumentError(absl::StrCat("cannot read config file ", path));
  absl::StatusOr<std::vector<ConfigSetting>> settings = ParseConfig(text.str(), path);
  if (!settings.ok()) return settings.status();
  for (const ConfigSetting& setting : *settings) {
    const std::string name = Underscored(setting.name);
    const std::string where = absl::StrCat(path, ":", setting.line, ": ");
    for (const char* reserved : kNotInConfig) {
      if (name == reserved) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, setting.name, " cannot be set in a config file"));
      }
    }
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    if (flag == nullptr || flag->IsRetired()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, "unknown setting ", setting.name, " (not a flag of this program)"));
    }
    std::string error;
    if (!flag->ParseFrom(setting.value, &error)) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, "bad value \"", setting.value, "\" for ", setting.name, ": ", error));
    }
  }
  return absl::OkStatus();
}

std::vector<std::string> ParseFlags(std::vector<std::string> args) {
  if (const std::string config = FindConfigPath(args); !config.empty()) {
    if (absl::Status st = ApplyConfigFile(config); !st.ok()) {
      const std::string program =
          args.empty() ? "zmesh" : std::filesystem::path(args[0]).filename().string();
      std::fprintf(stderr, "%s: %s\n", program.c_str(), std::string(st.message()).c_str());
      std::exit(2);
    }
  }
  std::vector<char*> pointers;
  pointers.reserve(args.size());
  for (std::string& arg : args) pointers.push_back(arg.data());
  std::vector<char*> positional =
      absl::ParseCommandLine(static_cast<int>(pointers.size()), pointers.data());
  return std::vector<std::string>(positional.begin(), positional.end());
}

std::vector<std::string> ParseFlags(int argc, char** argv) {
  return ParseFlags(NormalizeFlagNames(argc, argv));
}

bool WriteFileAtomically(const std::string& path, const std::string& contents) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << contents;
    if (!out.good()) return false;
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  return !ec;
}

std::string HostName() {
  char name[HOST_NAME_MAX + 1] = {};
  if (gethostname(name, sizeof(name) - 1) != 0 || name[0] == '\0') return "localhost";
  return name;
}

}  // namespace zmesh
