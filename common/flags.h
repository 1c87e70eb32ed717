// Command-line helpers shared by the daemons: flag parsing with config files, atomic file
// writes, the host name.
#pragma once

#include <string>
#include <vector>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace zmesh {

// Returns argv with flag names spelled with dashes ("--data-dir=x") rewritten to the
// underscore names absl flags use ("--data_dir=x"); values and positional arguments are left
// alone, and "--" ends flag processing. The daemons document the dashed spelling.
std::vector<std::string> NormalizeFlagNames(int argc, char** argv);

// Parses `args` (as NormalizeFlagNames returns them) into the program's absl flags, exactly as
// absl::ParseCommandLine does (it exits on --help and on bad flags), and returns the positional
// arguments, the program name first.
//
// `--config FILE` (or `--config=FILE`) first sets flags from FILE (see ApplyConfigFile); the
// command-line flags are applied after it, so they override the file whatever their order. A
// config file that cannot be read or has an error prints "<program>: FILE:LINE: ..." to stderr
// and exits with status 2 (bad usage).
std::vector<std::string> ParseFlags(std::vector<std::string> args);
// NormalizeFlagNames, then ParseFlags.
std::vector<std::string> ParseFlags(int argc, char** argv);

// One `name = value` line of a config file.
struct ConfigSetting {
  std::string name;   // as written in the file ("data-dir" or "data_dir")
  std::string value;  // surrounding blanks and quotes removed
  int line = 0;       // 1-based
};

// Parses the text of a config file (docs/deploy.md, "Config files"): one `name = value` per
// line; blank lines; `#` starts a comment at the start of a line or after a blank; a value may
// be put in double quotes to keep a `#` or blanks at its ends. Names are flag names without the
// leading dashes, with - or _. A name given twice is an error. Errors are INVALID_ARGUMENT
// "FILE:LINE: what is wrong", with `file_name` as FILE. Does not look at the program's flags.
[[nodiscard]] absl::StatusOr<std::vector<ConfigSetting>> ParseConfig(absl::string_view text,
                                                                     absl::string_view file_name);

// Reads the config file at `path` and sets the program's absl flags from it, in file order.
// Errors (INVALID_ARGUMENT "PATH:LINE: ...", or NOT_FOUND / PERMISSION_DENIED when the file
// cannot be read) for: syntax errors (ParseConfig), a name that is not a flag of this program,
// a value the flag does not accept, and names that cannot be set from a file (`config`, absl's
// `flagfile`, `fromenv`, `tryfromenv`, `undefok` and the --help family). Stops at the first
// error; flags set by earlier lines keep their new values.
[[nodiscard]] absl::Status ApplyConfigFile(const std::string& path);

// Writes `contents` to `path` through a temporary file and a rename, so readers see the whole
// file or none (ready files that tests and scripts poll for). false when it could not.
bool WriteFileAtomically(const std::string& path, const std::string& contents);

// This machine's host name; "localhost" when it cannot be read.
std::string HostName();

}  // namespace zmesh
