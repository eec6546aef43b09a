// `wavg train`: runs a training configuration (TOML + --set overrides), or resumes the run of a
// run directory from its resolved config.toml, and prints the summary. With --nproc N it launches N
// local data-parallel ranks of itself (the torchrun environment: RANK, WORLD_SIZE, LOCAL_RANK,
// LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT), forwards SIGINT/SIGTERM to them and exits with the
// first failing rank's status.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <memory>
#include <thread>

#include "wavg/cli/commands.h"
#include "wavg/core/error.h"
#include "wavg/train/runner.h"

namespace wavg::cli {

namespace {
struct TrainArgs {
  std::string config;
  std::vector<std::string> sets;
  std::string resume;
  bool overwrite = false;
  bool force = false;
  bool quiet = false;
  int nproc = 0;  // 0: one process (or one rank launched by the environment)
};


std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : ", ") + s;
  return out;
}

// The configuration to continue the run with: the recorded (resolved) one, with --config/--set
// applied. A difference is refused unless --force; threads, device and dist_timeout may differ.
// run_training warns about each change once, records it and rewrites config.toml.
RunConfig resume_config(const TrainArgs& a) {
  RunConfig run = recorded_run_config(a.resume, a.force, "resume");
  RunConfig now = load_run_config(a.config.empty() ? run_config_path(a.resume) : a.config, a.sets);
  now.out = run.out;
  // The definition is this wavg's: recorded_run_config refused another unless --force.
  now.workload_version = run.workload_version;
  std::vector<std::string> refused;
  for (const ConfigChange& c : refused_changes(run, now)) refused.push_back(describe(c));
  WAVG_CHECK(refused.empty() || a.force, "resume: the configuration differs from the run's: ",
             join(refused), "; pass --force to resume anyway");
  now.out = a.resume;
  return now;
}

// A TCP port free on the loopback interface now (the kernel's choice, as torchrun makes it).
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  const bool ok = fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
  if (fd >= 0) ::close(fd);
  WAVG_CHECK(ok, "train --nproc: no free TCP port on 127.0.0.1 (", std::strerror(errno), ")");
  return ntohs(addr.sin_port);
}

// This process's arguments without --nproc (each rank runs the same command).
std::vector<std::string> rank_arguments() {
  std::ifstream f("/proc/self/cmdline", std::ios::binary);
  const std::string all((std::istreambuf_iterator<char>(f)), {});
  std::vector<std::string> args, out;
  for (size_t i = 0; i < all.size();) {
    const size_t end = all.find('\0', i);
    args.push_back(all.substr(i, end - i));
    i = end == std::string::npos ? all.size() : end + 1;
  }
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--nproc") ++i;
    else if (args[i].rfind("--nproc=", 0) != 0) out.push_back(args[i]);
  }
  return out;
}

volatile std::sig_atomic_t g_forward_signal = 0;
extern "C" void remember_signal(int sig) { g_forward_signal = sig; }

// The exit status a shell would show for a child's wait status.
int exit_code(int status) {
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// Starts N ranks of this command on this host, forwards SIGINT/SIGTERM to them, and waits: once
// one fails, the others fail by themselves (their collectives notice the lost rank); those still
// running 30 s later are killed.
int spawn_ranks(int n) {
  WAVG_CHECK(std::getenv("WORLD_SIZE") == nullptr, "train --nproc: WORLD_SIZE is already set to '",
             std::getenv("WORLD_SIZE"), "' (this process is a rank of another launch)");
  const std::string port = std::to_string(free_port());
  std::vector<std::string> args = rank_arguments();
  std::vector<char*> argv;
  for (auto& s : args) argv.push_back(s.data());
  argv.push_back(nullptr);
  struct sigaction sa {}, old_int {}, old_term {};
  sa.sa_handler = remember_signal;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, &old_int);
  ::sigaction(SIGTERM, &sa, &old_term);
  std::vector<pid_t> pids(size_t(n), -1);
  for (int r = 0; r < n; ++r) {
    const pid_t pid = ::fork();
    WAVG_CHECK(pid >= 0, "train --nproc: cannot start rank ", r, " (", std::strerror(errno), ")");
    if (pid == 0) {
      ::sigaction(SIGINT, &old_int, nullptr);
      ::sigaction(SIGTERM, &old_term, nullptr);
      for (const auto& [k, v] : std::vector<std::pair<const char*, std::string>>{
               {"RANK", std::to_string(r)}, {"LOCAL_RANK", std::to_string(r)},
               {"WORLD_SIZE", std::to_string(n)}, {"LOCAL_WORLD_SIZE", std::to_string(n)},
               {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", port}})
        ::setenv(k, v.c_str(), 1);
      ::execv("/proc/self/exe", argv.data());
      std::fprintf(stderr, "wavg: error: train --nproc: cannot run rank %d (%s)\n", r,
                   std::strerror(errno));
      ::_exit(127);
    }
    pids[size_t(r)] = pid;
  }
  int running = n, first_failed = -1, code = 0;
  bool forwarded = false;  // the ranks were asked to stop: their 130/143 is no failure to report
  std::chrono::steady_clock::time_point deadline{};
  while (running > 0) {
    if (g_forward_signal != 0) {
      for (pid_t p : pids)
        if (p > 0) ::kill(p, g_forward_signal);
      g_forward_signal = 0;
      forwarded = true;
    }
    int status = 0;
    const pid_t done = ::waitpid(-1, &status, WNOHANG);
    if (done <= 0) {
      if (first_failed >= 0 && std::chrono::steady_clock::now() > deadline)
        for (pid_t p : pids)
          if (p > 0) ::kill(p, SIGKILL);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      continue;
    }
    for (int r = 0; r < n; ++r) {
      if (pids[size_t(r)] != done) continue;
      pids[size_t(r)] = -1;
      --running;
      if (exit_code(status) != 0 && first_failed < 0) {
        first_failed = r;
        code = exit_code(status);
        deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
        if (!forwarded)
          std::fprintf(stderr, "wavg: error: train --nproc %d: rank %d %s %d\n", n, r,
                     WIFEXITED(status) ? "exited with status" : "was killed by signal",
                     WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
      }
    }
  }
  ::sigaction(SIGINT, &old_int, nullptr);
  ::sigaction(SIGTERM, &old_term, nullptr);
  return code;
}

int run_train(const TrainArgs& a) {
  WAVG_CHECK(a.nproc >= 0 && a.nproc <= 4096, "train: --nproc must be in [1, 4096], got ", a.nproc);
  if (a.nproc > 1) return spawn_ranks(a.nproc);
  const char* rank = std::getenv("RANK");
  const bool silent = rank != nullptr && std::string(rank) != "0";  // only rank 0 prints
  WAVG_CHECK(!a.config.empty() || !a.resume.empty(),
             "train: give --config FILE (or --resume RUN_DIR)");
  WAVG_CHECK(a.resume.empty() || !a.overwrite, "train: --resume and --overwrite exclude each other");
  if (!a.resume.empty()) {
    if (const auto done = finished_run(a.resume); done && !silent) {
      std::printf("%s is finished (%s after %lld of %lld steps); nothing to do\n\n%s",
                  a.resume.c_str(), done->stop_reason == "early_stop" ? "early stop" : "budget",
                  (long long)done->steps_done, (long long)done->steps, format_summary(*done).c_str());
      return 0;
    }
  }
  const RunConfig c = a.resume.empty() ? load_run_config(a.config, a.sets) : resume_config(a);
  RunOptions o;
  o.overwrite = a.overwrite;
  o.resume = !a.resume.empty();
  o.quiet = a.quiet;
  const RunSummary s = run_training(c, o);
  if (silent) return s.interrupted_by ? 128 + s.interrupted_by : 0;
  if (s.interrupted_by) {
    std::printf("\ninterrupted at step %lld; state saved. Continue with: wavg train --resume %s\n",
                (long long)s.steps_done, c.out.c_str());
    return 128 + s.interrupted_by;
  }
  std::printf("\n%s", format_summary(s).c_str());
  std::printf("run directory: %s (config.toml, metrics.jsonl, summary.json, final_*.safetensors)\n",
              c.out.c_str());
  return 0;
}
}  // namespace

Command register_train(CLI::App& app) {
  auto a = std::make_shared<TrainArgs>();
  CLI::App* sub = app.add_subcommand("train", "Train a workload with a bank of averagers");
  sub->add_option("--config", a->config, "TOML configuration file (see configs/)");
  sub->add_option("--set", a->sets, "Override a key: --set optimizer.lr=3e-3 (repeatable)");
  sub->add_option("--resume", a->resume,
                  "Continue the run in RUN_DIR from its newest intact state");
  sub->add_flag("--force", a->force,
                "With --resume: accept a configuration that differs, or a raw (old) config.toml");
  sub->add_flag("--overwrite", a->overwrite,
                "Remove the previous run from the run directory (only files wavg wrote there)");
  sub->add_flag("--quiet", a->quiet, "No progress output");
  sub->add_option("--nproc", a->nproc,
                  "Data parallel: launch N local ranks of this command (or launch each rank "
                  "yourself with RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT set)");
  return {sub, [a] { return run_train(*a); }};
}

}  // namespace wavg::cli
