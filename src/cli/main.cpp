#include <cstdio>

int main() {
  std::puts("ruvdllm: under construction");
  return 0;
}
