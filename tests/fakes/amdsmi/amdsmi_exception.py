"""The exception classes of AMD's ``amdsmi`` package, same names and hierarchy."""

from enum import IntEnum

from . import amdsmi_wrapper


class AmdSmiRetCode(IntEnum):
    SUCCESS = amdsmi_wrapper.AMDSMI_STATUS_SUCCESS
    ERR_INVAL = amdsmi_wrapper.AMDSMI_STATUS_INVAL
    ERR_NOT_SUPPORTED = amdsmi_wrapper.AMDSMI_STATUS_NOT_SUPPORTED
    ERR_NO_PERM = amdsmi_wrapper.AMDSMI_STATUS_NO_PERM
    INIT_ERROR = amdsmi_wrapper.AMDSMI_STATUS_INIT_ERROR
    ERR_NOT_FOUND = amdsmi_wrapper.AMDSMI_STATUS_NOT_FOUND
    NOT_INIT = amdsmi_wrapper.AMDSMI_STATUS_NOT_INIT
    DRIVER_NOT_LOADED = amdsmi_wrapper.AMDSMI_STATUS_DRIVER_NOT_LOADED


class AmdSmiException(Exception):
    """Base smi exception class"""


class AmdSmiLibraryException(AmdSmiException):
    def __init__(self, err_code):
        err_code = abs(err_code)
        super().__init__(err_code)
        self.err_code = err_code
        try:
            self.err_info = f"AMDSMI_STATUS_{AmdSmiRetCode(err_code).name}"
        except ValueError:
            self.err_info = "AMDSMI_STATUS_UNKNOWN_ERROR - An unknown error occurred"

    def __str__(self):
        return f"An error occured with code: {self.err_code}({self.err_info})"

    def get_error_code(self):
        return self.err_code


class AmdSmiParameterException(AmdSmiException):
    def __init__(self, receivedValue, expectedType, msg=None):
        super().__init__(msg)
        self.actualType = type(receivedValue)
        self.expectedType = expectedType
        self.err_msg = msg or (
            f"Invalid parameter:\nActual type: {self.actualType}\nExpected type: {expectedType}"
        )

    def __str__(self):
        return self.err_msg
