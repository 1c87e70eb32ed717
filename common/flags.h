// Command-line helpers shared by the daemons.
#pragma once

#include <string>
#include <vector>

namespace zmesh {

// Returns argv with flag names spelled with dashes ("--data-dir=x") rewritten to the
// underscore names absl flags use ("--data_dir=x"); values and positional arguments are left
// alone, and "--" ends flag processing. The daemons document the dashed spelling.
std::vector<std::string> NormalizeFlagNames(int argc, char** argv);

}  // namespace zmesh
