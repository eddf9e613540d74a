// The sandbox's init process for the real-runtime tests: holds the pod's namespaces until it is
// told to stop, and reaps the children it inherits (it is PID 1 of the pod when PID namespaces
// are shared). A static binary, so the image needs no libc.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig) {
  (void)sig;
  _exit(0);
}

static void reap(int sig) {
  (void)sig;
  while (waitpid(-1, nullptr, WNOHANG) > 0) {
  }
}

int main(void) {
  signal(SIGINT, stop);
  signal(SIGTERM, stop);
  signal(SIGCHLD, reap);
  for (;;) pause();
}
