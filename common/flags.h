// Command-line helpers shared by the daemons.
#pragma once

#include <string>
#include <vector>

namespace zmesh {

// Returns argv with flag names spelled with dashes ("--data-dir=x") rewritten to the
// underscore names absl flags use ("--data_dir=x"); values and positional arguments are left
// alone, and "--" ends flag processing. The daemons document the dashed spelling.
std::vector<std::string> NormalizeFlagNames(int argc, char** argv);

// Parses `args` (as NormalizeFlagNames returns them) into the program's absl flags, exactly as
// absl::ParseCommandLine does (it exits on --help and on bad flags), and returns the positional
// arguments, the program name first.
std::vector<std::string> ParseFlags(std::vector<std::string> args);
// NormalizeFlagNames, then ParseFlags.
std::vector<std::string> ParseFlags(int argc, char** argv);

// Writes `contents` to `path` through a temporary file and a rename, so readers see the whole
// file or none (ready files that tests and scripts poll for). false when it could not.
bool WriteFileAtomically(const std::string& path, const std::string& contents);

// This machine's host name; "localhost" when it cannot be read.
std::string HostName();

}  // namespace zmesh
