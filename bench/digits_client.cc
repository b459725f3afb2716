// A greenfed client for the digits task only, without libtorch: what a digits
// client's footprint is when the binary does not link the Fashion-MNIST task. For
// the RSS comparison in docs/results/digits-2026-12-01/README.md; not installed.
//   digits_client ENDPOINT CLIENT_INDEX      (plaintext, modelled meter)
// Exit: 0 after the coordinator's Shutdown, 1 on an error, 2 on bad arguments.
#include <cstdlib>
#include <iostream>
#include <string>

#include "digits/task.h"
#include "greenfed/client/client.h"
#include "greenfed/env.h"
#include "greenfed/log.h"
#include "greenfed/meter.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: digits_client ENDPOINT CLIENT_INDEX\n";
    return 2;
  }
  greenfed::TaskRegistry registry;
  if (auto s = greenfed::digits::RegisterDigits(&registry); !s.ok()) {
    std::cerr << s.ToString() << "\n";
    return 1;
  }
  auto env = greenfed::NewSystemEnv();
  greenfed::MeterOptions mo;
  mo.kind = "model";
  auto set = greenfed::OpenMeters(mo, env.get());
  if (!set.ok()) {
    std::cerr << set.status().ToString() << "\n";
    return 1;
  }
  greenfed::PhaseMeter meter(std::move(set).value(), env.get());
  greenfed::Logger log("digits-client", &std::cout, &std::cerr);
  greenfed::ClientOptions co;
  co.connect = argv[1];
  co.requested_index = std::atoi(argv[2]);
  co.insecure = true;
  greenfed::Client client(co, &registry, &meter, env.get(), &log);
  auto result = client.Run();
  if (!result.ok()) {
    std::cerr << result.status().ToString() << "\n";
    return 1;
  }
  return 0;
}
