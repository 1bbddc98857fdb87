#include <criterion/criterion.h>
Test(dot, placeholder) {}
