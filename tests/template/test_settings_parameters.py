"""A settings error names the template parameter a person typed, then the variable the function reads
(`MemberAccountIds (MEMBER_ACCOUNT_IDS)`), as `vtriage run` names a value CloudFormation refuses: the
names the settings use (vtriage.config.TEMPLATE_PARAMETERS) are template.yaml's own."""

from __future__ import annotations

import pytest

from vtriage.config import TEMPLATE_PARAMETERS
from vtriage_local.template import functions, load_template, parameter_label


@pytest.mark.parametrize(("variable", "parameter"), sorted(TEMPLATE_PARAMETERS.items()))
def test_each_variable_a_settings_error_names_is_set_from_that_parameter_wherever_it_is_read(
    variable: str, parameter: str
) -> None:
    # Given template.yaml's functions
    template = load_template()
    readers = {
        name: spec.environment[variable]
        for name, spec in functions(template).items()
        if variable in spec.environment
    }

    # Then every function reading the variable reads it from that parameter, and the runner's label for the
    # parameter is the one the settings give
    assert readers, f"no function reads {variable}"
    assert all(value == {"Ref": parameter} for value in readers.values()), readers
    assert parameter_label(template, parameter) == f"{parameter} ({variable})"
